"""A trained model suggesting the agent's reply, as its method prompts and decodes: `dorl generate`
and `dorl chat` share it.

    s = Suggester(cfg, "runs/demo/abcd/train/dt", k=3)
    s.suggest([context])[0]  # [Suggestion(text, value)], response 1 greedy, 2..k the method's own

The method comes from the artifact's manifest (`stage: train/<method>`); its `prompt` and `respond`
(`dorl.methods`) do the work, with the decoding settings evaluation uses (`eval.*` and the method's
own, e.g. `ilql.beta`), so a suggestion is what `dorl evaluate` would have generated. The model is
loaded once per `Suggester` (`Method.load_model`), so `dorl chat` does not reload it every turn. A
method with values gives each suggestion its value (`Method.values`; ILQL: min target-Q of the
response's last action).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dorl import methods
from dorl.config import RunConfig
from dorl.errors import ConfigError, DataError
from dorl.store import Artifact
from dorl.text import CUS_END, CUS_START, REP_END, REP_START, SOC, render_conversation

TURN = re.compile(
    f"{re.escape(CUS_START)}(.*?){re.escape(CUS_END)}|{re.escape(REP_START)}(.*?){re.escape(REP_END)}", re.S
)


@dataclass
class Suggestion:
    text: str
    value: float | None = None  # ILQL: the value of the response


def turns_of(context: str) -> list[tuple[str, str]]:
    """(speaker, text) of each turn of a rendered context."""
    return [("customer", m[1]) if m[1] is not None else ("agent", m[2]) for m in TURN.finditer(context)]


def as_context(text: str) -> str:
    """A dorl context (`<_soc_>…`, as in a data artifact) as is; plain text as one customer turn."""
    if text.startswith(SOC):
        return text
    if SOC in text or CUS_START in text or REP_START in text:
        raise DataError(f"a context in dorl's format starts with {SOC}: {text[:60]!r}")
    return render_conversation([("customer", text)])


def trained_method(model: Artifact, method: str | None) -> str:
    if not model.stage.startswith("train/"):
        raise DataError(f"{model.uri} holds a '{model.stage}' artifact, not a trained model (train/<method>)")
    trained = model.stage.split("/", 1)[1]
    methods.method_class(trained)
    if method and method != trained:
        raise ConfigError(f"{model.uri} is a '{trained}' model but --method is '{method}': prompting would not match")
    return trained


class Suggester:
    """One model answering many times: loaded once (at the first `suggest`), kept for every later one."""

    def __init__(self, cfg: RunConfig, model_uri: str, method: str | None = None, k: int | None = None):
        from transformers.utils import logging as hf_logging

        from dorl.stages.evaluate import decode_config

        hf_logging.disable_progress_bar()  # "Loading weights" says nothing here

        self.model = Artifact(model_uri)
        self.name = trained_method(self.model, method)
        self.method = methods.get(self.name, cfg)
        self.decode = decode_config(cfg, self.method, self.model.info)
        self.k = cfg.eval.num_responses if k is None else k
        if self.k < 1:
            raise ConfigError(f"the number of suggestions must be >= 1, got {self.k}")
        self.dir = self.model.local_dir()
        self._loaded = None  # what the method's `load_model` gives
        self._fmt = None  # its prompt format (dorl.prompts), read once from its tokenizer

    def loaded(self):
        if self._loaded is None:
            self._loaded = self.method.load_model(self.dir)
        return self._loaded

    def prompt(self, context: str) -> str:
        if self._fmt is None:
            from dorl.methods.base import prompt_format

            self._fmt = prompt_format(self.dir)
        return self.method.prompt(context, self.model.info, self._fmt)

    def describe(self) -> str:
        """One line: the model, its method and how it decodes."""
        d = self.decode
        tokens = self.model.info.get("return_tokens")
        extra = f"; asks for the top return {tokens[-1]}" if tokens else ""
        return (
            f"{self.model.uri}: {self.name} model{extra}; {self.method.describe_decoding(d, self.k)}; "
            f"last {d.prompt_tokens} prompt tokens, at most {d.max_new_tokens} new"
        )

    def suggest(self, contexts: list[str]) -> list[list[Suggestion]]:
        prompts = [self.prompt(c) for c in contexts]
        loaded = self.loaded()
        responses, _ = self.method.respond(self.dir, prompts, self.decode, self.k, loaded=loaded)
        values = self.method.values(loaded, prompts, responses, self.decode)
        return [
            [Suggestion(t, values[i][j] if values else None) for j, t in enumerate(r)] for i, r in enumerate(responses)
        ]
