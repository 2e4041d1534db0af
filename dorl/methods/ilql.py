"""ilql: implicit language Q-learning on the shared training engine (the model, heads, loss and
decoding live in `dorl.ilql`): `dorl train --method ilql --data <relabel> --base <tf>`.

The engine (`dorl.engine.trainer`) owns the loop, DeepSpeed, checkpoints and logs; this class supplies:

- the training set: every candidate as prompt (context + <_rep_start_>), response (+ <_rep_end_>),
  reward and return (the chat format, `dorl.prompts`: the rendered prompt, the response + the end-of-turn token,
  so the actions are the response's tokens and that token);
- data: those rows -> token ids, the number of response tokens (actions) and the return standardised
  with the *training* set's mean and std;
- the module DeepSpeed trains (`ILQLLoss`): the base LM with V, Q and target-Q heads, whose
  forward is the ILQL loss, averaged over the batch's actions (the engine's "targets");
- the Polyak update of the target heads after every `polyak_every`-th optimizer step;
- saving: a plain HF causal-LM folder plus `ilql_heads.safetensors` and `ilql_config.json`;
- evaluation: response 1 decoded greedily with beta * (min target-Q - V), responses 2..N sampled
  (ilql.top_k, ilql.temperature) and re-ranked by their value;
- its settings: the `ilql` section (`ILQLConfig`, below; `ilql.train` for the optimisation).

The target heads are fp32 buffers (see `dorl.ilql.heads.as_buffers`): out of the optimizer, left
in fp32 by DeepSpeed's bf16 mode, saved in DeepSpeed's module state, so a resumed run continues
with them exactly. ZeRO-3: the efficient heads score against the LM's output embedding outside the
LM head's forward, so it is registered as an external parameter of the model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

from dorl.config import TrainConfig
from dorl.config.loader import param
from dorl.errors import ConfigError, DataError
from dorl.generate import DecodeConfig
from dorl.methods.base import Method, device
from dorl.methods.lines import FinetuneConfig, check_relabel_inputs
from dorl.store import Artifact

log = logging.getLogger("dorl.train")
SPLITS = ("train", "validation")
DECODING = ("beta", "top_k", "temperature")  # evaluation settings: they do not change the trained model


@dataclass
class ILQLConfig:
    """ILQL training and decoding (the run config's `ilql` section; `ilql.train`: its optimisation)."""

    RANGES: ClassVar[dict] = {
        "tau": "(0, 1)",
        "gamma": "[0, 1]",
        "cql_weight": ">= 0",
        "ce_weight": ">= 0",
        "awac_beta": ">= 0",
        "awac_max_weight": "> 0",
        "polyak_alpha": "(0, 1]",
        "polyak_every": ">= 1",
        "beta": ">= 0",
        "beta_grid": "> 0",
        "beta_contexts": ">= 0",
        "top_k": ">= 0",
        "temperature": "> 0",
    }
    train: FinetuneConfig = param(factory=FinetuneConfig, help="Optimisation settings of ILQL.")
    heads: Literal["efficient", "reference"] = param(
        "efficient",
        "'efficient': each Q head is an MLP d->2d->d scored against the LM's output embedding (detached) plus "
        "a per-token bias (~2.4M parameters per head at distilgpt2 size); 'reference': the released system's "
        "d->2d->|V| MLPs (~78M per head; four of them with twin Q and targets).",
    )
    returns: Literal["return", "reward"] = param(
        "return", "Column of the relabelled data used as the return: the binned 'return' or the raw 'reward'."
    )
    tau: float = param(0.7, "Expectile of the V regression toward min target-Q (0.5 = mean; higher = optimistic).")
    gamma: float = param(0.99, "Discount of the Q regression target r + gamma * V(next).")
    cql_weight: float = param(0.1, "Weight of the CQL cross-entropy of Q over the vocabulary toward the taken token.")
    ce_weight: float = param(1.0, "Weight of the LM cross-entropy on response tokens (the policy's training signal).")
    awac: bool = param(False, "Weight the LM cross-entropy by min(exp(awac_beta * advantage), awac_max_weight).")
    awac_beta: float = param(1.0, "Inverse temperature of the advantage weights (awac=true).")
    awac_max_weight: float = param(20.0, "Upper clip of the advantage weights (awac=true).")
    two_qs: bool = param(True, "Twin Q heads (min over both targets) instead of one.")
    polyak_alpha: float | Literal["auto"] = param(
        "auto",
        "Target-Q update every polyak_every steps: target = (1-alpha)*target + alpha*Q. 'auto': scaled to the run, "
        "alpha = min(1, polyak_every / (0.05 * steps)), a time constant of 5% of the run (trlx's 0.001 every 5 "
        "steps at 100,000 steps); a number, e.g. trlx's 0.001, is used as given.",
    )
    polyak_every: int = param(5, "Optimizer steps between target-Q updates.")
    beta: float | Literal["auto"] = param(
        "auto",
        "Decoding: log_softmax(LM) + beta*(min target-Q - V) (LM/temperature when sampling). 'auto': the beta of "
        "ilql.beta_grid that decoded the validation contexts best (training chooses it and records it in the "
        "model's manifest, info.beta); 0 = the reference's evaluation (plain greedy decoding of the LM).",
    )
    beta_grid: list[float] = param(
        factory=lambda: [0.5, 1.0, 2.0, 4.0],
        help="The betas (> 0) training tries on the validation contexts for ilql.beta=auto; beta 0 is decoded too, "
        "for comparison, but not chosen.",
    )
    beta_contexts: int = param(
        200,
        "Validation contexts (a fixed sample) decoded greedily at each beta of ilql.beta_grid and scored with the "
        "training reward (relabel.reward) against their human response; 0: no choice (beta=auto decodes with 0).",
    )
    keep_best_by: Literal["loss", "value_ranking"] = param(
        "loss",
        "What keep-best (ilql.train.keep_best) selects on: the validation 'loss', or 'value_ranking' (the share of "
        "validation contexts whose top-return response V values above the others; higher is better).",
    )
    scorer_candidates: Literal["tf", "tf_top", "tf_all", "dt"] = param(
        "dt",
        "ilql_scorer in pipeline.scorers: the method whose greedy + beam responses ILQL's V re-ranks (the "
        "reference: dt).",
    )
    top_k: int = param(20, "Decoding top-k when sampling (0 = the whole vocabulary).")
    temperature: float = param(
        1.0,
        "Decoding temperature when sampling (> 0): it divides the LM logits only, before beta*advantage is added "
        "(trlx divides the sum), so a low temperature sharpens the LM and cancels beta (at 1e-3, 0.95 of the mass "
        "stays on the LM's argmax). Greedy decoding (response 1) ignores it: argmax of log_softmax(LM) + "
        "beta*advantage, trlx's limit T -> 0.",
    )

    def check(self, where: str) -> None:
        if not self.beta_grid:
            raise ConfigError(f"config key '{where}.beta_grid': empty; name the betas (> 0) to choose from")


class ILQL(Method):
    loss_label = "ILQL loss per action"
    config_section = "ilql.train"

    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._info: dict = {}
        self.stats = None  # ReturnStats of the training returns (set by `datasets`)
        self._head_parameters: int | None = None
        self.engine = None  # DeepSpeed's, for the fp32 master weights (`on_engine`)
        self._alpha: float | None = None  # the Polyak rate of this run (ilql.polyak_alpha, "auto" resolved)
        self._beta: dict | None = None  # the decoding beta chosen on validation (`finish`)
        self._val_groups = self._val_returns = self._val_values = None  # the value ranking (`validation_metrics`)
        self._val_frame = self._val_ranked = None  # the validation rows, and which of them the ranking counts

    # ---------------------------------------------------------------- the training set (relabel)
    def training_set(self, candidates, return_bins: int):
        import numpy as np
        import pandas as pd

        return pd.DataFrame(
            {
                "prompt": [self.fmt.prompt(c) for c in candidates["context"]],
                "response": [c + self.fmt.end for c in candidates["candidate"]],
                "reward": candidates["reward"].astype(np.float64).to_numpy(),
                "return": np.asarray(candidates["return"], dtype=np.int64),
                # 0: the human response (the value ranking leaves it out: no model proposes it)
                "candidate_index": np.asarray(candidates["candidate_index"], dtype=np.int64),
            }
        )

    # ---------------------------------------------------------------- configuration
    def train_config(self) -> TrainConfig:
        return self.cfg.ilql.train

    def hyperparameters(self) -> dict:
        """The ILQL settings that shape the trained model (decoding's are chosen at evaluation)."""
        return {k: v for k, v in asdict(self.cfg.ilql).items() if k != "train" and k not in DECODING}

    def config(self) -> dict:
        # eval.prompt_tokens: the validation samples are prompted as evaluation prompts (see `datasets`); the beta
        # is chosen by decoding as evaluation decodes, scored with the training reward (`finish`)
        ec = self.cfg.eval
        validation = {"prompt_tokens": ec.prompt_tokens, "max_new_tokens": ec.max_new_tokens,
                      "reward": self.cfg.relabel.reward}  # fmt: skip
        return {"method": self.name, "train": asdict(self.train_config()), "ilql": self.hyperparameters(),
                "validation": validation}  # fmt: skip

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        check_relabel_inputs(self, data, base, "ilql.train.max_length")

    # ---------------------------------------------------------------- data
    def datasets(self, data: Artifact, tok, rows: dict):
        import numpy as np

        from dorl.engine.data import Examples
        from dorl.ilql.data import ReturnStats, encode

        column, max_length = self.cfg.ilql.returns, self.train_config().max_length
        frames = {split: rows[split] for split in SPLITS}
        self.stats = ReturnStats.fit(frames["train"][column])
        sets = []
        for split, df in frames.items():
            # Validation as evaluation sees a context: its prompt cut to eval.prompt_tokens, as decoding and the
            # scorer cut it, so the value ranking and keep-best judge the model in the setting it is used in.
            prompt_tokens = self.cfg.eval.prompt_tokens if split == "validation" else None
            samples = encode(df, tok, max_length, self.stats, column, prompt_tokens=prompt_tokens)
            ex = Examples.from_lists(
                [s.input_ids for s in samples],
                n_actions=np.array([s.n_actions for s in samples], dtype=np.int32),
                reward=np.array([s.reward for s in samples], dtype=np.float64),
            )
            actions = int(ex.fields["n_actions"].sum())
            self._info[split] = {"samples": len(ex), "tokens": ex.n_tokens, "actions": actions}
            sets.append(ex)
        self._info["returns"] = {"column": column, "mean": self.stats.mean, "std": self.stats.std, "n": self.stats.n}
        self._ranking_set(frames["validation"], column)
        self._info["polyak"] = self._polyak_schedule(len(sets[0]))
        st = self.stats
        log.info("ilql: returns ('%s') standardised by the training mean %.4g and std %.4g", column, st.mean, st.std)
        return sets[0], sets[1]

    def _ranking_set(self, val, column: str) -> None:
        """Each validation sample's context and return, for the value ranking of every validation; the human
        responses are left out of the ranking (no model proposes them, and they always have the top return)."""
        import numpy as np

        from dorl.ilql.ranking import value_ranking

        self._val_frame = val
        self._val_ranked = val["candidate_index"].to_numpy() != 0
        self._val_groups = val["prompt"].to_numpy()[self._val_ranked]
        self._val_returns = val[column].to_numpy(dtype=np.float64)[self._val_ranked]
        self._val_values = np.zeros(len(val))
        contexts = value_ranking(self._val_values[self._val_ranked], self._val_groups, self._val_returns)
        contexts = contexts["value_contexts"]
        self._info["validation"]["ranked_contexts"] = contexts
        if self.cfg.ilql.keep_best_by == "value_ranking" and not contexts:
            raise DataError(
                "ilql.keep_best_by=value_ranking: no validation context has responses of different returns to rank"
            )

    def _polyak_schedule(self, n_train: int) -> dict:
        """Warn when the run is too short for its Polyak schedule to move the targets much (polyak.MOVED)."""
        from dorl.engine.data import steps_per_epoch
        from dorl.ilql.polyak import schedule

        tc, ic = self.train_config(), self.cfg.ilql
        steps = tc.max_steps or tc.epochs * steps_per_epoch(n_train, tc.batch_size)
        out = schedule(steps, ic.polyak_alpha, ic.polyak_every)
        self._alpha = out["alpha"]
        how = f"scaled to the run's {steps} steps" if ic.polyak_alpha == "auto" else "as set"
        log.info(
            "ilql: the target heads follow the Q heads, alpha %g every %d steps (%s)", self._alpha, ic.polyak_every, how
        )
        if out["too_short"]:
            log.warning(
                "ilql: %d steps with polyak_alpha=%g every %d leave the target heads %.1f%% their initial weights "
                "(weight on the trained heads %.3f < %.1f; %s steps would reach it): "
                "raise ilql.polyak_alpha or train longer",
                steps, self._alpha, ic.polyak_every, 100 * (1 - out["target_weight"]), out["target_weight"],
                out["bound"], out["steps_to_bound"] or "no number of",
            )  # fmt: skip
        return out

    def collate(self, examples: list[dict]) -> dict:
        from dorl.ilql.data import Collator, Sample

        samples = [Sample(e["input_ids"].tolist(), int(e["n_actions"]), float(e["reward"])) for e in examples]
        return Collator(self.pad_id)(samples)

    def target_count(self, batch: dict) -> int:
        return int(batch["state_mask"].sum())

    # ---------------------------------------------------------------- model
    def meta(self):
        from dorl.ilql.model import ILQLMeta

        ic, stats = self.cfg.ilql, self.stats
        return ILQLMeta(
            heads=ic.heads,
            two_qs=ic.two_qs,
            return_mean=stats.mean if stats else 0.0,
            return_std=stats.std if stats else 1.0,
            extra=self.hyperparameters(),
        )

    def wrap(self, lm):
        import torch

        from dorl.ilql.heads import count_parameters
        from dorl.ilql.loss import ILQLLoss, LossConfig
        from dorl.ilql.model import ILQLModel

        # Seeded apart from the global stream: every rank builds the same heads (DeepSpeed broadcasts
        # parameters, not the target buffers), and a run and its re-run start from the same ones.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config().seed)
            model = ILQLModel(lm, self.meta())
        self._head_parameters = count_parameters(model.heads)  # the LM's count is the engine's "parameters"
        if self.train_config().zero_stage == 3:
            import deepspeed

            deepspeed.zero.register_external_parameter(model, model.lm_head.weight)
        return ILQLLoss(model, LossConfig.of(self.cfg.ilql))

    def on_engine(self, engine) -> None:
        self.engine = engine

    def on_step_end(self, module, step: int) -> None:
        """Polyak-average the target heads toward the Q heads' fp32 master weights (DeepSpeed's, where it
        keeps them apart from the bf16 or partitioned ones the model computes with)."""
        from dorl.engine.trainer import fp32_masters
        from dorl.ilql.polyak import is_sync_step, polyak_update

        ic = self.cfg.ilql
        if is_sync_step(step, ic.polyak_every):
            targets, params = zip(*module.model.heads.polyak_pairs(), strict=True)
            alpha = self._alpha if self._alpha is not None else float(ic.polyak_alpha)  # set: no schedule to resolve
            polyak_update(zip(targets, fp32_masters(self.engine, params), strict=True), alpha)

    def on_validation_batch(self, module, idx) -> None:
        self._val_values[idx] = module.last_values.cpu().double().numpy()

    def validation_metrics(self, dist) -> dict:
        """The value ranking (`dorl.ilql.ranking.value_ranking`) of V at each validation response's last
        state, over every validation context (each rank filled in its own samples)."""
        import numpy as np

        from dorl.ilql.ranking import value_ranking

        values = np.asarray(dist.all_sum(self._val_values.tolist()))
        self._val_values[:] = 0.0
        return value_ranking(values[self._val_ranked], self._val_groups, self._val_returns)

    def selection(self) -> tuple[str, bool]:
        return ("value_ranking", True) if self.cfg.ilql.keep_best_by == "value_ranking" else ("val_loss", False)

    def save(self, module, state_dict: dict, out_dir: Path) -> None:
        from dorl.ilql import io

        prefix = "model."
        model = module.model
        model.meta = self.meta()  # the return statistics are known once the data is read
        state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        io.save(model, out_dir, state_dict=state, decoding=self.decoding())  # what plain transformers decodes with

    def finish(self, out_dir: Path) -> None:
        """Choose the decoding beta on validation (`dorl.ilql.beta`): ilql.beta_contexts validation contexts decoded
        greedily at 0 and at each of ilql.beta_grid, scored with the training reward against their human response;
        recorded as info.beta, what evaluation decodes with under ilql.beta=auto."""
        import torch

        from dorl.ilql import io as ilql_io
        from dorl.ilql.beta import sample_contexts, sweep
        from dorl.methods.base import load_tokenizer
        from dorl.metrics import get_metric

        if (out_dir / "config.json").is_file():  # LoRA's merged folder wrote config.json anew: name the code again
            ilql_io.ship_code(out_dir)
        ic, ec = self.cfg.ilql, self.cfg.eval
        prompts, references = sample_contexts(self._val_frame, ic.beta_contexts) if ic.beta_contexts else ([], [])
        if not prompts:
            log.info("ilql: no validation contexts to choose beta on (ilql.beta_contexts=%d)", ic.beta_contexts)
            return
        tok = load_tokenizer(out_dir)
        dtype = torch.bfloat16 if device() == "cuda" else torch.float32
        model = ilql_io.load(out_dir, device=device(), dtype=dtype)
        dc = DecodeConfig(prompt_tokens=ec.prompt_tokens, max_new_tokens=ec.max_new_tokens, batch_size=ec.batch_size,
                          top_k=ic.top_k, temperature=ic.temperature)  # fmt: skip
        self._beta = sweep(
            model, tok, prompts, references, ic.beta_grid, dc, get_metric(self.cfg.relabel.reward, self.cfg.metrics)
        )
        grid = ", ".join(f"{r['beta']:g}: {r['reward']:.4f}" for r in self._beta["grid"])
        log.info("ilql: beta %g chosen on %d validation contexts (mean %s by beta: %s)", self._beta["beta"],
                 len(prompts), self._beta["metric"], grid)  # fmt: skip

    def info(self) -> dict:
        ic = self.cfg.ilql
        out = {"data": self._info, "heads": ic.heads, "two_qs": ic.two_qs, "head_parameters": self._head_parameters}
        return out | ({"beta": self._beta} if self._beta else {})

    # ---------------------------------------------------------------- evaluation
    def decoding(self, model_info: dict | None = None) -> dict:
        out = {k: getattr(self.cfg.ilql, k) for k in DECODING}
        if out["beta"] == "auto":  # what training chose on validation (`finish`)
            chosen = (model_info or {}).get("beta", {}).get("beta")
            if chosen is None:
                log.warning(
                    "ilql.beta=auto, but the model records no beta chosen on validation (trained before dorl chose "
                    "one, or ilql.beta_contexts=0): decoding with beta 0; set ilql.beta"
                )
            out["beta"] = float(chosen or 0.0)
        return out

    def respond(self, model_dir: Path, prompts: list[str], decode: DecodeConfig, num_responses: int, loaded=None):
        """Response 1: greedy with beta * advantage; 2..N: samples re-ranked by their value."""
        import time

        from dorl.ilql.decode import decode as ilql_decode
        from dorl.ilql.decode import ilql_scorer

        model, tok = loaded if loaded is not None else self.load_model(model_dir)
        started = time.perf_counter()
        greedy = ilql_decode(model, tok, prompts, decode.but(sample=False), desc="greedy", progress=True)
        out = [[t.strip()] for t in greedy.texts]
        if num_responses > 1:
            ranked = ilql_scorer(model, tok, prompts, decode, num_candidates=num_responses - 1, progress=True)
            out = [o + [c.text.strip() for c in r] for o, r in zip(out, ranked, strict=True)]
        seconds = time.perf_counter() - started
        return out, {"seconds": round(seconds, 3), "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 3)}

    # ---------------------------------------------------------------- generation hooks (see Method)
    def load_model(self, model_dir: Path):
        """The ILQL model (the LM and its heads, in model.dtype: auto = bf16 on a GPU) and its tokenizer."""
        from dorl.engine.models import compute_dtype, inference_kwargs
        from dorl.ilql import io as ilql_io
        from dorl.methods.base import load_tokenizer

        dtype = compute_dtype(self.cfg.model, device())
        model = ilql_io.load(model_dir, device=device(), dtype=dtype, **inference_kwargs(self.cfg.model))
        return model, load_tokenizer(model_dir)

    def describe_decoding(self, decode: DecodeConfig, k: int) -> str:
        more = f", {k - 1} more sampled (top_k={decode.top_k}, temperature={decode.temperature}) and ranked by value"
        return f"response 1 greedy with beta={decode.beta}" + (more if k > 1 else "")

    def values(self, loaded, prompts: list[str], responses: list[list[str]], decode: DecodeConfig):
        """The value of each response as shown (its text + its format's end): min target-Q of its last action."""
        from dorl.generate import encode_prompts
        from dorl.ilql.decode import response_values
        from dorl.prompts import PromptFormat

        model, tok = loaded
        p_ids = encode_prompts(tok, prompts, decode.prompt_tokens)
        flat_p = [p for p, r in zip(p_ids, responses, strict=True) for _ in r]
        end = PromptFormat.of(tok).end  # <_rep_end_>, or the chat template's end of turn
        flat_r = [tok(t + end, add_special_tokens=False)["input_ids"] for r in responses for t in r]
        flat = iter(response_values(model, flat_p, flat_r, tok.pad_token_id, decode.batch_size))
        return [[round(next(flat), 4) for _ in r] for r in responses]

    @classmethod
    def card_notes(cls) -> list[str]:
        return [
            "",
            "## ILQL heads",
            "",
            "The folder is a plain causal LM (the policy) plus `ilql_heads.safetensors` and `ilql_config.json` (V, "
            "Q and target-Q heads, and the decoding settings) and `modeling_dorl_ilql.py`, the code that decodes "
            "with them. Which model you get depends on how you load it:",
            "",
            "- `AutoModelForCausalLM.from_pretrained(FOLDER)` (and `pipeline('text-generation', model=FOLDER)`) "
            "loads the **behaviour policy** only: it decodes without the value heads (beta = 0), dorl's ILQL "
            "evaluation at beta = 0, not advantage-guided decoding.",
            "- `AutoModelForCausalLM.from_pretrained(FOLDER, trust_remote_code=True)` runs `modeling_dorl_ilql.py` "
            "(read it first; it imports only torch, transformers and safetensors): `model.generate(**inputs)` "
            "decodes as `dorl generate` does, greedy on log_softmax(LM) + beta * (min target-Q - V), with beta, "
            "top_k and temperature from `ilql_config.json`'s `decoding`. Override them in the call "
            "(`model.generate(**inputs, beta=4.0)`); sample with `do_sample=True, num_return_sequences=4, seed=0`. "
            "`pipeline('text-generation', model=FOLDER, trust_remote_code=True)` decodes the same way.",
            "- In dorl: `dorl generate --model FOLDER --set ilql.beta=4` (responses 2..N: samples ranked by "
            "value), or `from dorl.ilql import io; model = io.load(FOLDER)`.",
        ]
