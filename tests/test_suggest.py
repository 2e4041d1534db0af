"""`dorl.suggest.Suggester` (what `dorl generate` and `dorl chat` run): the model is loaded once and answers
every later turn, and the decoding description and values come from the method's hooks."""

from __future__ import annotations

from dorl import config, readers
from dorl.text import render_conversation


def counting_loads(monkeypatch) -> list:
    """Every model load goes through `readers.causal_lm` (text methods and ILQL alike): count them."""
    calls, real = [], readers.causal_lm
    monkeypatch.setattr(readers, "causal_lm", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_chat_turns_reuse_the_loaded_model(tiny_model_artifact, monkeypatch):
    from dorl.suggest import Suggester

    loads = counting_loads(monkeypatch)
    s = Suggester(config.load(preset="tiny", sets=["eval.max_new_tokens=4"]), tiny_model_artifact.uri, k=2)
    assert "response 1 greedy, 1 more by beam search" in s.describe()
    turns = [("customer", "my jeans arrived broken")]
    first = s.suggest([render_conversation(turns)])
    turns += [("agent", first[0][0].text), ("customer", "thanks")]
    second = s.suggest([render_conversation(turns)])
    assert len(loads) == 1  # once, for both turns (it was loaded on every turn)
    assert [len(r) for r in first + second] == [2, 2]
    assert all(x.value is None for r in first + second for x in r)  # tf has no values
