"""A trained model suggesting the agent's reply, as its method prompts and decodes: `dorl generate`
and `dorl chat` share it.

    s = Suggester(cfg, "runs/demo/abcd/train/dt", k=3)
    s.suggest([context])[0]  # [Suggestion(text, value)], response 1 greedy, 2..k the method's own

The method comes from the artifact's manifest (`stage: train/<method>`); its `prompt` and `respond`
(`dorl.methods`) do the work, with the decoding settings evaluation uses (`eval.*` and the method's
own, e.g. `ilql.beta`), so a suggestion is what `dorl evaluate` would have generated. ILQL's
suggestions also carry their value: min target-Q of the response's last action (`response_values`).
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
    def __init__(self, cfg: RunConfig, model_uri: str, method: str | None = None, k: int | None = None):
        from transformers.utils import logging as hf_logging

        from dorl.stages.evaluate import decode_config

        hf_logging.disable_progress_bar()  # "Loading weights" on every turn says nothing here

        self.model = Artifact(model_uri)
        self.name = trained_method(self.model, method)
        self.method = methods.get(self.name, cfg)
        self.decode = decode_config(cfg, self.method)
        self.k = cfg.eval.num_responses if k is None else k
        if self.k < 1:
            raise ConfigError(f"the number of suggestions must be >= 1, got {self.k}")
        self.dir = self.model.local_dir()
        self._ilql = None  # the ILQL model, loaded once for the values
        self._fmt = None  # its prompt format (dorl.prompts), read once from its tokenizer

    def prompt(self, context: str) -> str:
        if self._fmt is None:
            from dorl.methods.base import prompt_format

            self._fmt = prompt_format(self.dir)
        return self.method.prompt(context, self.model.info, self._fmt)

    def describe(self) -> str:
        """One line: the model, its method and how it decodes."""
        d = self.decode
        how = f"response 1 greedy, {self.k - 1} more by beam search" if self.k > 1 else "greedy"
        extra = ""
        if self.name == "ilql":
            how = f"response 1 greedy with beta={d.beta}" + (
                f", {self.k - 1} more sampled (top_k={d.top_k}, temperature={d.temperature}) and ranked by value"
                if self.k > 1
                else ""
            )
        tokens = self.model.info.get("return_tokens")
        if tokens:
            extra = f"; asks for the top return {tokens[-1]}"
        return (
            f"{self.model.uri}: {self.name} model{extra}; {how}; "
            f"last {d.prompt_tokens} prompt tokens, at most {d.max_new_tokens} new"
        )

    def suggest(self, contexts: list[str]) -> list[list[Suggestion]]:
        prompts = [self.prompt(c) for c in contexts]
        responses, _ = self.method.respond(self.dir, prompts, self.decode, self.k)
        values = self.values(prompts, responses) if self.name == "ilql" else None
        return [
            [Suggestion(t, values[i][j] if values else None) for j, t in enumerate(r)] for i, r in enumerate(responses)
        ]

    def values(self, prompts: list[str], responses: list[list[str]]) -> list[list[float]]:
        """ILQL: the value of each response as shown (its text + <_rep_end_>)."""
        from dorl.generate import encode_prompts
        from dorl.ilql import io as ilql_io
        from dorl.ilql.decode import response_values
        from dorl.methods.base import device, load_tokenizer

        if self._ilql is None:
            self._ilql = ilql_io.load(self.dir, device=device()), load_tokenizer(self.dir)
        model, tok = self._ilql
        p_ids = encode_prompts(tok, prompts, self.decode.prompt_tokens)
        flat_p = [p for p, r in zip(p_ids, responses, strict=True) for _ in r]
        end = self._fmt.end if self._fmt else REP_END
        flat_r = [tok(t + end, add_special_tokens=False)["input_ids"] for r in responses for t in r]
        flat = response_values(model, flat_p, flat_r, tok.pad_token_id, self.decode.batch_size)
        out, i = [], 0
        for r in responses:
            out.append([round(v, 4) for v in flat[i : i + len(r)]])
            i += len(r)
        return out
