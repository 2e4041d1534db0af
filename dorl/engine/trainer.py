"""The training loop every method shares, on DeepSpeed.

One optimizer step = `batch_size` examples, whatever the world size: each of the `world` processes
runs `gas = batch_size / (micro_batch_size * world)` micro-batches. The step's loss is the mean over
all of its target tokens (not a mean of micro-batch means), so lines of different lengths weigh
what they hold and the result does not depend on how the step is split across processes.

Order of things after a step: hook (`on_step_end`), log, validation (epoch ends, `eval_every`, the
last step), checkpoint (`checkpoint_every`, epoch ends, the last step).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dorl import log as dlog
from dorl.config import TrainConfig
from dorl.engine import monitor, preempt
from dorl.engine.checkpoint import Checkpointer
from dorl.engine.data import (
    Examples,
    accumulation_steps,
    epoch_steps,
    eval_batches,
    rank_micro_batches,
    steps_per_epoch,
)
from dorl.engine.ds_side_effects import clear_stale_build_locks
from dorl.errors import DataError, Stopped

log = logging.getLogger("dorl.train")


def use_bf16(tc: TrainConfig, model_dtype: str = "auto") -> bool:
    """DeepSpeed's bf16 mode: the section's `precision`, whose 'auto' follows model.dtype (whose 'auto' is bf16 on
    a GPU, fp32 on a CPU)."""
    if tc.precision != "auto":
        return tc.precision == "bf16"
    if model_dtype != "auto":
        return model_dtype == "bfloat16"
    return torch.cuda.is_available()


def ds_config(tc: TrainConfig, world: int, bf16: bool, node_local: bool) -> dict:
    cfg = {
        "train_batch_size": tc.batch_size,
        "train_micro_batch_size_per_gpu": tc.micro_batch_size,
        "gradient_accumulation_steps": accumulation_steps(tc, world),
        "zero_optimization": {"stage": tc.zero_stage},
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,  # torch's AdamW: no extension to compile
        "checkpoint": {"use_node_local_storage": node_local},
        "steps_per_print": 2**31,
        "wall_clock_breakdown": False,
    }
    if tc.grad_clip > 0:
        cfg["gradient_clipping"] = tc.grad_clip
    return cfg


def param_groups(module, weight_decay: float) -> list[dict]:
    """Decay matrices only (nanoGPT / HF Trainer): never biases, norms or other vectors."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fp32_masters(engine, params) -> list:
    """DeepSpeed's fp32 master copy of each parameter (full, on its device), or the parameter itself where it is
    its own master (fp32 without ZeRO). Collective under ZeRO (gathered): every rank must call it.

    `safe_get_full_fp32_param` knows ZeRO's and BF16_Optimizer's masters, not those of bf16 without ZeRO, where
    DeepSpeed wraps the optimizer in its FP16_(Unfused)Optimizer: fp32 copies kept beside the bf16 parameters."""
    from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer
    from deepspeed.utils import safe_get_full_fp32_param

    masters = {}  # id(param) -> master
    opt = engine.optimizer
    if isinstance(opt, FP16_UnfusedOptimizer):  # a client optimizer (torch's AdamW): fp32 copies per parameter
        for group, fp32 in zip(opt.fp16_groups, opt.fp32_groups, strict=True):
            masters.update({id(p): m for p, m in zip(group, fp32, strict=True)})
    elif isinstance(opt, FP16_Optimizer):  # DeepSpeed's fused Adam: one flat fp32 buffer per group
        from torch._utils import _unflatten_dense_tensors

        for group, flat in zip(opt.fp16_groups, opt.fp32_groups_flat, strict=True):
            masters.update({id(p): m for p, m in zip(group, _unflatten_dense_tensors(flat, group), strict=True)})
    out = []
    for p in params:
        full = safe_get_full_fp32_param(p) if p.requires_grad else None
        out.append(full if full is not None else masters.get(id(p), p))
    return out


def full_state_dict(engine, keep: bool = True) -> dict:
    """The module's full fp32 weights on CPU (collective: ZeRO shards and bf16 master copies are gathered;
    every rank takes part, only those with `keep` hold the result)."""
    import deepspeed

    out = {}
    names, params = zip(*engine.module.named_parameters(), strict=True)
    for name, p, full in zip(names, params, fp32_masters(engine, params), strict=True):
        if full is p and hasattr(p, "ds_id"):  # a frozen ZeRO-3 parameter
            with deepspeed.zero.GatheredParameters([p]):
                full = p.detach().clone()
        if keep:
            out[name] = full.detach().float().cpu()
    if not keep:
        return out
    persistent = set(engine.module.state_dict().keys())
    for name, b in engine.module.named_buffers():
        if name in persistent:
            out[name] = b.detach().cpu()
    return out


def accumulator(device) -> dict:
    """What `_step` sums over a logging interval: the loss (float64), target count, head positions, tokens, squared
    lengths and the method's statistics (the benches that drive `_step` themselves start from one too)."""
    return {"loss": torch.zeros((), dtype=torch.float64, device=device), "targets": 0.0, "head": 0.0,
            "tokens": 0.0, "tokens_sq": 0.0, "stats": {}}  # fmt: skip


@dataclass
class TrainState:
    """Where training is; saved with every checkpoint."""

    seed: int
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # next step index within the epoch
    tokens: int = 0  # real (non-padding) tokens trained on, all ranks
    targets: int = 0  # positions with a label (where the output head runs)
    tokens_sq: float = 0.0  # sum of squared sequence lengths (attention FLOPs)
    train_time_s: float = 0.0  # time in training steps (no validation, no checkpoints)
    best_val_loss: float | None = None  # the validation loss at best_step
    best_score: float | None = None  # what keep-best compares (`Method.selection`): the loss by default
    best_step: int | None = None
    best_dir: str | None = None
    last_val_step: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FitResult:
    state: TrainState
    total_steps: int
    steps_per_epoch: int
    resumed_from: int | None
    tokens_per_s: float
    mfu: float | None
    records: list = field(default_factory=list)


class Trainer:
    def __init__(self, method, module, tc: TrainConfig, train: Examples, val: Examples, dist, workdir: Path,
                 ckpt: Checkpointer, save_best=None, run=None):  # fmt: skip
        self.method, self.tc, self.train, self.val, self.dist = method, tc, train, val, dist
        self.run = run  # tracking.RunInfo: the trackers and what they are told
        self.workdir, self.ckpt, self.save_best = workdir, ckpt, save_best
        self.gas = accumulation_steps(tc, dist.world)
        self.spe = steps_per_epoch(len(train), tc.batch_size)
        if self.spe == 0:
            raise DataError(f"the training set has {len(train)} examples, fewer than one batch of {tc.batch_size}")
        self.total_steps = tc.max_steps or tc.epochs * self.spe
        self.group = method.group_by_length()
        self.bf16 = use_bf16(tc, method.cfg.model.dtype)
        from dorl.engine.models import flop_shape

        self.flops = flop_shape(getattr(module, "lm", module))
        self.peak = monitor.peak_flops(dist.device)
        self.engine = self._engine(module)
        method.on_engine(self.engine)

    def _engine(self, module):
        import deepspeed
        from transformers import get_scheduler

        tc = self.tc
        if self.dist.local_main:
            clear_stale_build_locks()
        name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[tc.scheduler]
        config = ds_config(tc, self.dist.world, self.bf16, self.ckpt.node_local)
        engine, *_ = deepspeed.initialize(
            model=module,
            model_parameters=param_groups(module, tc.weight_decay),
            # torch's fused AdamW (CPU and GPU): no DeepSpeed extension to compile, one kernel per step
            optimizer=lambda params: torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps, fused=True),
            lr_scheduler=lambda opt: get_scheduler(name, opt, tc.warmup_steps, self.total_steps),
            config=config,
        )
        if self.dist.world == 1 and tc.zero_stage == 0 and not self.bf16:
            engine.enable_backward_allreduce = False  # one process: nothing to reduce, skip flattening the grads
        return engine

    # ---------------------------------------------------------------- batches
    def _batch(self, data: Examples, idx) -> tuple[dict, int, int]:
        """(the collated micro-batch, its real tokens, the sum of its sequences' squared lengths)."""
        examples = [data[i] for i in idx]
        lengths = np.asarray(self.method.sequence_lengths(examples), dtype=np.int64)
        batch = self.method.collate(examples)
        return batch, int(lengths.sum()), int((lengths**2).sum())

    def _to_device(self, batch: dict) -> dict:
        dev = self.dist.device
        return {k: v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def evaluate(self) -> tuple[float, dict]:
        """Validation loss (the mean over every validation target token, all ranks) and the method's own
        validation metrics (`Method.validation_metrics`: ILQL's value ranking)."""
        self.engine.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.dist.device)
        count = 0
        for idx in eval_batches(self.val.lengths, self.tc.micro_batch_size, self.dist.rank, self.dist.world):
            batch, *_ = self._batch(self.val, idx if idx is not None else [0])
            n = self.method.target_count(batch) if idx is not None else 0
            loss, _ = self.engine(**self._to_device(batch))
            if idx is not None:
                self.method.on_validation_batch(self.engine.module, idx)
            loss_sum += loss.double() * n
            count += n
        self.engine.train()
        total, n = self.dist.all_sum([loss_sum.item(), count])
        return total / max(n, 1), self.method.validation_metrics(self.dist)

    # ---------------------------------------------------------------- the loop
    def fit(self) -> FitResult:
        st = TrainState(seed=self.tc.seed)
        path = self.ckpt.find()
        if path is not None:
            st = TrainState(**self.ckpt.load(self.engine, path))
            log.info("resuming from %s (step %d of %d)", path.name, st.step, self.total_steps)
        else:
            torch.manual_seed(self.tc.seed + self.dist.rank)
            np.random.seed(self.tc.seed + self.dist.rank)
        resumed_from = st.step if path is not None else None
        # Training mode from the first step: `from_pretrained` returns a model in eval mode (no dropout), which
        # only validation's `engine.train()` would otherwise undo, so a resumed run would differ.
        self.engine.train()
        if self.dist.main:
            monitor.restore_logs(path / "logs" if path is not None else None, self.workdir)
        mon = monitor.Monitor(self.workdir, self.dist.main, st.step, self.run)
        log.info(
            "training %d steps (%d per epoch) · batch %d = %d process(es) x %d micro x %d accumulation · %s",
            self.total_steps, self.spe, self.tc.batch_size, self.dist.world, self.tc.micro_batch_size, self.gas,
            "bf16" if self.bf16 else "fp32",
        )  # fmt: skip
        acc = accumulator(self.dist.device)
        interval_start, paused = time.perf_counter(), 0.0
        mark = time.perf_counter()  # start of the step in progress: train_time_s counts steps only
        saved_at = st.step if path is not None else None
        with preempt.StopRequest() as stop, dlog.progress() as bar:
            task = bar.add_task(f"train {self.method.name}", total=self.total_steps, completed=st.step)
            while st.step < self.total_steps:
                # Each epoch its own order (seed, epoch): computed again whenever an epoch begins, so an
                # uninterrupted run and one resumed in any epoch see the same batches.
                steps = epoch_steps(self.train.lengths, self.tc.batch_size, self.tc.seed, st.epoch, self.group)
                while st.batch < len(steps) and st.step < self.total_steps:
                    done = self._step(steps[st.batch], acc, stop.requested)
                    if done is None:  # SIGTERM on some rank: every rank saves where it is, then exits 75
                        self._stop(st, mon, saved_at)
                    head, tokens, tokens_sq = done
                    # Totals at every step (kept in every checkpoint): a resumed run's tokens, tokens/s and MFU
                    # are those of an uninterrupted one.
                    st.targets += int(head)
                    st.tokens += int(tokens)
                    st.tokens_sq += tokens_sq
                    st.step += 1
                    st.batch += 1
                    self.method.on_step_end(self.engine.module, st.step)
                    bar.update(task, completed=st.step)
                    epoch_end = st.batch == len(steps)
                    last = st.step == self.total_steps
                    if st.step % self.tc.log_every == 0 or last:
                        elapsed = self._sync_time(interval_start) - paused
                        mon.write(self._log_record(st, acc, elapsed))
                        interval_start, paused = time.perf_counter(), 0.0
                    t0 = time.perf_counter()
                    st.train_time_s += t0 - mark
                    eval_due = self.tc.eval_every and st.step % self.tc.eval_every == 0
                    if epoch_end or last or eval_due:
                        self._validate(st, mon)
                    if epoch_end:
                        st.epoch, st.batch = st.epoch + 1, 0
                    if epoch_end or last or st.step % self.tc.checkpoint_every == 0:
                        saved_at = self._checkpoint(st, mon)
                    mark = time.perf_counter()
                    paused += mark - t0
                    if epoch_end:
                        break  # the next epoch's order
        mon.close()
        tps = st.tokens / st.train_time_s if st.train_time_s > 0 else 0.0
        mfu = self._mfu(st.tokens, st.targets, st.tokens_sq, st.train_time_s)
        records = monitor.read_log(self.workdir) if self.dist.main else []
        return FitResult(st, self.total_steps, self.spe, resumed_from, tps, mfu, records)

    def _checkpoint(self, st: TrainState, mon: monitor.Monitor) -> int:
        """Save the run as it is (model, optimizer, position, logs); returns the step saved."""
        self.ckpt.save(self.engine, st.to_dict(), lambda d: mon.snapshot(d / "logs"))
        return st.step

    def _stop(self, st: TrainState, mon: monitor.Monitor, saved_at: int | None) -> None:
        if st.step and saved_at != st.step:
            self._checkpoint(st, mon)
        mon.close()
        raise Stopped(f"stopped by signal 15 at step {st.step} of {self.total_steps} (its checkpoint saved)")

    def _step(self, step_idx: np.ndarray, acc: dict, stop: bool = False) -> tuple[float, float, float] | None:
        """One optimizer step; returns its output-head positions, tokens and squared lengths summed over all
        ranks, or None, without stepping, when any rank was asked to stop."""
        micro = rank_micro_batches(step_idx, self.tc.micro_batch_size, self.dist.rank, self.dist.world)
        batches = [self._batch(self.train, idx) for idx in micro]
        counts = [self.method.target_count(b) for b, *_ in batches]
        heads = [self.method.head_positions(b) for b, *_ in batches]
        local = [sum(counts), sum(heads), sum(b[1] for b in batches), sum(b[2] for b in batches), float(stop)]
        total, head, tokens, tokens_sq, stops = self.dist.all_sum(local)
        if stops:
            return None
        scale = self.gas * self.dist.world / max(total, 1.0)
        on_device = [self._to_device(b) for b, *_ in batches]
        # A statistic of the whole step (all processes) that its losses use: KTO's KL estimate, AWR's mean weight
        self.method.before_step(self.engine.module, on_device, self.dist)
        for batch, (_, n_tok, n_sq), n, h in zip(on_device, batches, counts, heads, strict=True):
            loss, stats = self.engine(**batch)
            self.engine.backward(loss * (n * scale))
            self.engine.step()
            acc["loss"] += loss.detach().double() * n
            acc["targets"] += n
            acc["head"] += h
            acc["tokens"] += n_tok
            acc["tokens_sq"] += n_sq
            for k, v in stats.items():
                acc["stats"][k] = acc["stats"].get(k, 0.0) + (v.detach().double() if torch.is_tensor(v) else v) * n
        return head, tokens, tokens_sq

    def _sync_time(self, start: float) -> float:
        if self.dist.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def _mfu(self, tokens: float, targets: float, tokens_sq: float, seconds: float) -> float | None:
        if self.peak is None or seconds <= 0:
            return None
        flops = monitor.model_flops(self.flops, tokens, targets, tokens_sq)
        return flops / seconds / (self.peak * self.dist.world)

    def _log_record(self, st: TrainState, acc: dict, elapsed: float) -> dict:
        keys = sorted(acc["stats"])
        local = [float(acc["loss"]), acc["targets"], acc["head"], acc["tokens"], acc["tokens_sq"]]
        local += [float(acc["stats"][k]) for k in keys]
        loss, targets, head, tokens, tokens_sq, *stats = self.dist.all_sum(local)
        grad_norm = self.engine.get_global_grad_norm()
        rec = {
            "kind": "train",
            "step": st.step,
            "epoch": st.epoch,
            "loss": loss / max(targets, 1.0),
            "lr": float(self.engine.lr_scheduler.get_last_lr()[0]),
            "tokens": int(tokens),
            "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            "mfu": self._mfu(tokens, head, tokens_sq, elapsed),
        }
        if grad_norm is not None:  # DeepSpeed keeps it under ZeRO / bf16
            rec["grad_norm"] = float(grad_norm)
        rec.update({k: v / max(targets, 1.0) for k, v in zip(keys, stats, strict=True)})
        acc["loss"].zero_()
        acc.update(targets=0.0, head=0.0, tokens=0.0, tokens_sq=0.0, stats={})
        if not math.isfinite(rec["loss"]):
            raise FloatingPointError(f"training loss is {rec['loss']} at step {st.step}: lower the lr?")
        return rec

    def _validate(self, st: TrainState, mon) -> None:
        if len(self.val) == 0:
            if st.last_val_step is None:
                log.warning("no validation examples: no validation loss, the last weights are the output")
            st.last_val_step = st.step
            return
        val, extra = self.evaluate()
        st.last_val_step = st.step
        mon.write({"kind": "eval", "step": st.step, "epoch": st.epoch, "val_loss": val, **extra})
        key, higher = self.method.selection()  # ("val_loss", False) unless the method says otherwise
        score = val if key == "val_loss" else extra[key]
        if st.best_score is None and key == "val_loss":
            st.best_score = st.best_val_loss  # a checkpoint from before best_score existed
        if st.best_score is None or (score > st.best_score if higher else score < st.best_score):
            st.best_val_loss, st.best_score, st.best_step = val, score, st.step
            if self.save_best is not None:
                st.best_dir = self.save_best(self.engine, st.step)
