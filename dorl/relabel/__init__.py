"""Relabelling: beam-search candidates of the base model, rewards, returns and the methods' training sets."""

from dorl.relabel.stage import relabel

__all__ = ["relabel"]
