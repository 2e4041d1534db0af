"""ilql: implicit language Q-learning on the shared training engine (the model, heads, loss and
decoding live in `dorl.ilql`): `dorl train --method ilql --data <relabel> --base <tf>`.

The engine (`dorl.engine.trainer`) owns the loop, DeepSpeed, checkpoints and logs; this class supplies:

- the training set: every candidate as prompt (context + <_rep_start_>), response (+ <_rep_end_>),
  reward and return;
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
from dorl.errors import DataError
from dorl.generate import DecodeConfig
from dorl.methods.base import Method, device
from dorl.methods.lines import FinetuneConfig, check_relabel_inputs
from dorl.store import Artifact
from dorl.text import REP_END, prompt

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
    polyak_alpha: float = param(0.001, "Target-Q update: target = (1-alpha)*target + alpha*Q.")
    polyak_every: int = param(5, "Optimizer steps between target-Q updates.")
    beta: float = param(
        0.0,
        "Decoding: log_softmax(LM) + beta*(min target-Q - V) (LM/temperature when sampling); 0 = the reference's "
        "evaluation "
        "(plain greedy decoding of the LM; the heads are not evaluated).",
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


class ILQL(Method):
    loss_label = "ILQL loss per action"
    config_section = "ilql.train"

    def __init__(self, cfg, name):
        super().__init__(cfg, name)
        self._info: dict = {}
        self.stats = None  # ReturnStats of the training returns (set by `datasets`)
        self._head_parameters: int | None = None
        self.engine = None  # DeepSpeed's, for the fp32 master weights (`on_engine`)
        self._val_groups = self._val_returns = self._val_values = None  # the value ranking (`validation_metrics`)

    # ---------------------------------------------------------------- the training set (relabel)
    def training_set(self, candidates, return_bins: int):
        import numpy as np
        import pandas as pd

        return pd.DataFrame(
            {
                "prompt": [prompt(c) for c in candidates["context"]],
                "response": [c + REP_END for c in candidates["candidate"]],
                "reward": candidates["reward"].astype(np.float64).to_numpy(),
                "return": np.asarray(candidates["return"], dtype=np.int64),
            }
        )

    # ---------------------------------------------------------------- configuration
    def train_config(self) -> TrainConfig:
        return self.cfg.ilql.train

    def hyperparameters(self) -> dict:
        """The ILQL settings that shape the trained model (decoding's are chosen at evaluation)."""
        return {k: v for k, v in asdict(self.cfg.ilql).items() if k != "train" and k not in DECODING}

    def config(self) -> dict:
        return {"method": self.name, "train": asdict(self.train_config()), "ilql": self.hyperparameters()}

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
            samples = encode(df, tok, max_length, self.stats, column)
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
        """Each validation sample's context and return, for the value ranking of every validation."""
        import numpy as np

        from dorl.ilql.ranking import value_ranking

        self._val_groups = val["prompt"].to_numpy()
        self._val_returns = val[column].to_numpy(dtype=np.float64)
        self._val_values = np.zeros(len(val))
        contexts = value_ranking(self._val_values, self._val_groups, self._val_returns)["value_contexts"]
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
        if out["too_short"]:
            log.warning(
                "ilql: %d steps with polyak_alpha=%g every %d leave the target heads %.1f%% their initial weights "
                "(weight on the trained heads %.3f < %.1f; %s steps would reach it): "
                "raise ilql.polyak_alpha or train longer",
                steps, ic.polyak_alpha, ic.polyak_every, 100 * (1 - out["target_weight"]), out["target_weight"],
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
            polyak_update(zip(targets, fp32_masters(self.engine, params), strict=True), ic.polyak_alpha)

    def on_validation_batch(self, module, idx) -> None:
        self._val_values[idx] = module.last_values.cpu().double().numpy()

    def validation_metrics(self, dist) -> dict:
        """The value ranking (`dorl.ilql.ranking.value_ranking`) of V at each validation response's last
        state, over every validation context (each rank filled in its own samples)."""
        import numpy as np

        from dorl.ilql.ranking import value_ranking

        values = np.asarray(dist.all_sum(self._val_values.tolist()))
        self._val_values[:] = 0.0
        return value_ranking(values, self._val_groups, self._val_returns)

    def selection(self) -> tuple[str, bool]:
        return ("value_ranking", True) if self.cfg.ilql.keep_best_by == "value_ranking" else ("val_loss", False)

    def save(self, module, state_dict: dict, out_dir: Path) -> None:
        from dorl.ilql import io

        prefix = "model."
        model = module.model
        model.meta = self.meta()  # the return statistics are known once the data is read
        io.save(model, out_dir, state_dict={k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})

    def info(self) -> dict:
        ic = self.cfg.ilql
        return {"data": self._info, "heads": ic.heads, "two_qs": ic.two_qs, "head_parameters": self._head_parameters}

    # ---------------------------------------------------------------- evaluation
    def decoding(self) -> dict:
        return {k: getattr(self.cfg.ilql, k) for k in DECODING}

    def respond(self, model_dir: Path, prompts: list[str], decode: DecodeConfig, num_responses: int):
        """Response 1: greedy with beta * advantage; 2..N: samples re-ranked by their value."""
        import time

        from dorl.engine.models import compute_dtype, inference_kwargs
        from dorl.ilql import io as ilql_io
        from dorl.ilql.decode import decode as ilql_decode
        from dorl.ilql.decode import ilql_scorer
        from dorl.methods.base import load_tokenizer

        tok = load_tokenizer(model_dir)
        dtype = compute_dtype(self.cfg.model, device())
        model = ilql_io.load(model_dir, device=device(), dtype=dtype, **inference_kwargs(self.cfg.model))
        started = time.perf_counter()
        greedy = ilql_decode(model, tok, prompts, decode.but(sample=False))
        out = [[t.strip()] for t in greedy.texts]
        if num_responses > 1:
            ranked = ilql_scorer(model, tok, prompts, decode, num_candidates=num_responses - 1)
            out = [o + [c.text.strip() for c in r] for o, r in zip(out, ranked, strict=True)]
        seconds = time.perf_counter() - started
        return out, {"seconds": round(seconds, 3), "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 3)}
