"""ilql: implicit language Q-learning on the shared training engine (the model, heads, loss and
decoding live in `dorl.ilql`): `dorl train --method ilql --data <relabel> --base <tf>`.

The engine (`dorl.engine.trainer`) owns the loop, DeepSpeed, checkpoints and logs; this class supplies:

- the training set: every candidate as prompt (context + <_rep_start_>), response (+ <_rep_end_>),
  reward and return;
- data: relabel's `methods/ilql/{train,validation}.parquet` -> token ids, the number of response
  tokens (actions) and the return standardised with the *training* set's mean and std;
- the module DeepSpeed trains (`ILQLLoss`): the base LM with V, Q and target-Q heads, whose
  forward is the ILQL loss, averaged over the batch's actions (the engine's "targets");
- the Polyak update of the target heads after every `polyak_every`-th optimizer step;
- saving: a plain HF causal-LM folder plus `ilql_heads.safetensors` and `ilql_config.json`;
- evaluation: response 1 decoded greedily with beta * (min target-Q - V), responses 2..N sampled
  (ilql.top_k, ilql.temperature) and re-ranked by their value; the config section is `ilql`
  (`ilql.train` for the optimisation).

The target heads are fp32 buffers (see `dorl.ilql.heads.as_buffers`): out of the optimizer, left
in fp32 by DeepSpeed's bf16 mode, saved in DeepSpeed's module state, so a resumed run continues
with them exactly. ZeRO-3: the efficient heads score against the LM's output embedding outside the
LM head's forward, so it is registered as an external parameter of the model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from torch import nn

from dorl.config import TrainConfig
from dorl.errors import ConfigError, DataError
from dorl.generate import DecodeConfig
from dorl.methods.base import Method, device
from dorl.methods.lines import check_relabel_inputs
from dorl.store import Artifact
from dorl.text import REP_END, prompt

log = logging.getLogger("dorl.train")
SPLITS = ("train", "validation")
DECODING = ("beta", "top_k", "temperature")  # evaluation settings: they do not change the trained model


def check_hyperparameters(ic) -> None:
    """The ILQL settings a run cannot work with, before anything is written."""
    rules = [
        ("tau", 0 < ic.tau < 1, "in (0, 1)"),
        ("gamma", 0 <= ic.gamma <= 1, "in [0, 1]"),
        ("cql_weight", ic.cql_weight >= 0, ">= 0"),
        ("ce_weight", ic.ce_weight >= 0, ">= 0"),
        ("awac_max_weight", ic.awac_max_weight > 0, "> 0"),
        ("polyak_alpha", 0 <= ic.polyak_alpha <= 1, "in [0, 1]"),
        ("polyak_every", ic.polyak_every >= 0, ">= 0 (0: the targets never move)"),
    ]
    for name, ok, want in rules:
        if not ok:
            raise ConfigError(f"ilql.{name}={getattr(ic, name)} must be {want}")


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

    def files(self) -> list[str]:
        return [f"methods/ilql/{split}.parquet" for split in SPLITS]

    def check_inputs(self, data: Artifact, base: Artifact | None) -> None:
        check_relabel_inputs(self, data, base, "ilql.train.max_length", " (with the ilql set)")
        check_hyperparameters(self.cfg.ilql)

    # ---------------------------------------------------------------- data
    def datasets(self, data: Artifact, tok):
        import numpy as np

        from dorl.engine.data import Examples
        from dorl.ilql.data import ReturnStats, encode, read_split

        column, max_length = self.cfg.ilql.returns, self.train_config().max_length
        frames = {split: read_split(data.path(f"methods/ilql/{split}.parquet"), column) for split in SPLITS}
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
        from dorl.ilql.loss import LossConfig
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

        import torch

        from dorl.ilql import io as ilql_io
        from dorl.ilql.decode import decode as ilql_decode
        from dorl.ilql.decode import ilql_scorer
        from dorl.methods.base import load_tokenizer

        tok = load_tokenizer(model_dir)
        dtype = torch.bfloat16 if device() == "cuda" else torch.float32
        model = ilql_io.load(model_dir, device=device(), dtype=dtype)
        started = time.perf_counter()
        greedy = ilql_decode(model, tok, prompts, decode.but(sample=False))
        out = [[t.strip()] for t in greedy.texts]
        if num_responses > 1:
            ranked = ilql_scorer(model, tok, prompts, decode, num_candidates=num_responses - 1)
            out = [o + [c.text.strip() for c in r] for o, r in zip(out, ranked, strict=True)]
        seconds = time.perf_counter() - started
        return out, {"seconds": round(seconds, 3), "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 3)}


class ILQLLoss(nn.Module):
    """What DeepSpeed trains: forward(input_ids, state_mask, rewards) -> (ILQL loss, stats), the loss
    and every stat a mean over the batch's actions (the engine weights them by `target_count`)."""

    def __init__(self, model, loss_cfg):
        super().__init__()
        self.model = model
        self.loss_cfg = loss_cfg
        self.cql = loss_cfg.cql_weight > 0  # Q over the whole vocabulary only when its term counts
        self.last_values = None  # in evaluation mode: (B,) V at each row's last action state (before <_rep_end_>)

    @property
    def lm(self):
        return self.model.lm

    def forward(self, input_ids, state_mask, rewards, **_):
        from dorl.ilql.loss import ilql_loss

        out = self.model(input_ids, state_mask, cql=self.cql)
        if not self.training:  # validation: V where each response's last action (<_rep_end_>) is taken
            import torch

            last = torch.ones_like(out.rows, dtype=torch.bool)
            last[:-1] = out.rows[1:] != out.rows[:-1]  # states are row-major: each row's last one
            self.last_values = out.v.new_zeros(input_ids.shape[0]).index_copy(0, out.rows[last], out.v[last].detach())
        loss, stats = ilql_loss(out, rewards, self.loss_cfg, sync=False)
        return loss, {k: v for k, v in stats.items() if k != "loss" and not isinstance(v, int)}
