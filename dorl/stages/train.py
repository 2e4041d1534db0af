"""The `train/<method>` stage: `train(cfg, method=, [seed=,] data_uri=, base_uri=, out_uri=)` -> StageResult.

Everything a user can get wrong (method, config, inputs) is checked before anything is written or
any process group exists. Under a launcher every rank trains, but only rank 0 goes through
`run_stage` (pending marker, manifest, commit); it tells the others whether to train, skip or fail,
and they wait for its commit at a barrier.

A method trained on a relabel artifact builds its training set from the artifact's scored candidates
(`Method.training_sets`: every rank the same rows) and records it as `training_set/{train,validation}.parquet`
(rank 0; `info.training_set` counts the rows), with the columns it computes once from the starting model before
the first step (`Method.reference`: DPO's and KTO's reference log-probs; kept with the checkpoints for a resume).

The artifact is a `save_pretrained` folder (safetensors + tokenizer), completed for plain transformers by
`dorl.model_folder.finish` (generation config, chat template, model card), with `train_log.jsonl`,
`tensorboard/`, `loss.png` and the training set; `checkpoints/` lives beside it while training and is removed once
the artifact is committed (unless `retain_checkpoints`).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import click

from dorl import methods
from dorl.config import RunConfig
from dorl.engine import dist as dmod
from dorl.engine import lora
from dorl.engine.data import accumulation_steps
from dorl.errors import ConfigError, TransientError, UserError
from dorl.options import config_options, force_option
from dorl.store import Artifact, ArtifactWriter, StageResult, run_stage

log = logging.getLogger("dorl.train")
TRAINING_SET = "training_set"  # the method's rows, as it trained on them: training_set/{train,validation}.parquet
REFERENCE = "reference"  # checkpoints/reference/{split}.parquet: the method's columns from the starting model


def train(
    cfg: RunConfig,
    *,
    method: str,
    seed: int | None = None,
    data_uri: str,
    base_uri: str | None = None,
    out_uri: str,
    force: bool = False,
) -> StageResult:
    """`seed`: the method's TrainConfig.seed (tf.seed, finetune.seed or ilql.train.seed) for this run, as
    `--set <section>.seed=S` would set it: recorded in the manifest's config like every training setting."""
    if seed is not None:
        cfg = with_seed(cfg, methods.method_class(method).config_section, seed)
    m = methods.get(method, cfg)
    tc = m.train_config()
    accumulation_steps(tc, dmod.world_size_from_env())  # the rest of `tc` was checked when it was loaded
    if m.needs_base and not base_uri:
        raise ConfigError(f"method {method!r} starts from the base model: give --base <train/tf artifact URI>")
    if not m.needs_base and base_uri:
        raise ConfigError(f"method {method!r} trains from the model.* configuration; --base is for the methods")
    data = Artifact(data_uri, expect_stage=m.data_stage)
    base = Artifact(base_uri, expect_stage="train/tf") if base_uri else None
    m.check_inputs(data, base)
    inputs = {"data": data, **({"base": base} if base else {})}

    from dorl.engine.ds_side_effects import torch_linear_kept

    with dmod.rendezvous_env(), torch_linear_kept():
        return _run(m, tc, method, data, base, inputs, out_uri, force)


def with_seed(cfg: RunConfig, section: str, seed: int) -> RunConfig:
    """`cfg` with `<section>.seed` (a dotted path to a TrainConfig, e.g. 'ilql.train') set to `seed`."""
    if seed < 0:
        raise ConfigError(f"--seed: a seed is >= 0, got {seed}")
    head, _, rest = section.partition(".")
    part = getattr(cfg, head)
    part = with_seed(part, rest, seed) if rest else dataclasses.replace(part, seed=seed)
    return dataclasses.replace(cfg, **{head: part})


def _run(m, tc, method, data, base, inputs, out_uri, force) -> StageResult:
    d = dmod.setup()
    stage = f"train/{method}"
    if not d.main:
        logging.getLogger("dorl").setLevel(logging.WARNING)  # one voice: rank 0 logs progress
        status, message = d.broadcast(None)
        if status == "transient":  # e.g. S3 throttling on rank 0: every rank exits 75, retried, not failed as 2
            raise TransientError(message)
        if status == "error":
            raise UserError(message)
        if status == "crash":
            raise RuntimeError(message)
        if status == "go":
            _train(m, ArtifactWriter(out_uri), data, base, d)
        d.barrier()  # rank 0 commits
        _drop_local_checkpoints(ArtifactWriter(out_uri), d, tc.retain_checkpoints)
        return StageResult(Artifact(out_uri), skipped=status == "skip")

    told = False

    def body(ctx):
        nonlocal told
        d.broadcast(("go", None))
        told = True
        ctx.info, ctx.metrics = _train(m, ctx.out, data, base, d)

    try:
        result = run_stage(stage, out_uri, {**m.config(), **lora.recorded(m.cfg.model)}, inputs, body, force)
    except BaseException as e:
        if not told:
            d.broadcast(_status_of(e))
        raise
    if not told:
        d.broadcast(("skip", None))
    if not result.skipped and not tc.retain_checkpoints:
        ArtifactWriter(out_uri).remove("checkpoints")  # only for resuming, which a complete artifact never does
    d.barrier()
    return result


def _status_of(e: BaseException) -> tuple[str, str]:
    """What rank 0 tells the other ranks when it fails before training: each then exits with the code rank 0 does
    (a transient store error is a `StoreError` too, so it is tested first: 75, not 2)."""
    if isinstance(e, TransientError):
        return "transient", str(e)
    if isinstance(e, UserError):
        return "error", str(e)
    return "crash", f"rank 0 failed: {e!r}"


def _drop_local_checkpoints(writer: ArtifactWriter, d, retain: bool) -> None:
    """Other nodes' own copies (S3 outputs keep one per node)."""
    if not retain and d.local_main and not writer.loc.is_local:
        shutil.rmtree(writer.dir / "checkpoints", ignore_errors=True)


def _sync(writer: ArtifactWriter):
    """Upload `prefix` (a file or a folder) of the working folder to the store; `only` filters the paths."""

    def sync(prefix: str, only=None) -> None:
        if writer.loc.is_local:
            return
        path = writer.dir / prefix
        for p in [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file()):
            rel = p.relative_to(writer.dir).as_posix()
            if only is None or only(rel):
                writer.loc.upload(p, rel)

    return sync


def _validation_at(records: list, step: int | None) -> dict | None:
    """The validation record (loss and the method's metrics, e.g. ILQL's value ranking) of the output step."""
    found = [r for r in records if r.get("kind") == "eval" and r.get("step") == step]
    return {k: v for k, v in found[-1].items() if k not in ("kind", "step", "epoch")} if found else None


def _shared_tokenizer(m, ckpt, data, base, d):
    """Rank 0 builds the tokenizer once (or finds the one the run started with) and sends its files."""
    from transformers import AutoTokenizer

    folder = ckpt.root / "tokenizer"
    files = None
    if d.main:
        if not folder.is_dir():
            tok = m.tokenizer(data, base)
            ckpt.save_folder("tokenizer", tok.save_pretrained)
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files = d.broadcast(files)
    if d.main:
        return AutoTokenizer.from_pretrained(folder)
    with tempfile.TemporaryDirectory(prefix="dorl-tok-") as tmp:
        for name, blob in files.items():
            (Path(tmp) / name).write_bytes(blob)
        return AutoTokenizer.from_pretrained(tmp)


def _reference(m, module, sets: dict, ckpt, d) -> dict:
    """The method's per-example columns from the model before its first step (`Method.reference`: DPO's and KTO's
    reference log-probs), added to the examples as fields. Computed once: kept in checkpoints/reference/, which a
    resumed run reads back (the checkpoint's weights are loaded later, by the trainer). {split: {column: array}}."""
    import numpy as np
    import pandas as pd

    folder = ckpt.root / REFERENCE
    columns = None
    if d.main and folder.is_dir():
        columns = {split: pd.read_parquet(folder / f"{split}.parquet").to_dict("series") for split in sets}
        columns = {split: {k: v.to_numpy() for k, v in c.items()} for split, c in columns.items()}
    columns = d.broadcast(columns)
    if columns is None:
        columns = m.reference(module, sets, d)
        if columns is None:
            return {}
        if d.main:
            ckpt.save_folder(REFERENCE, lambda p: [pd.DataFrame(c).to_parquet(p / f"{split}.parquet", index=False)
                                                   for split, c in columns.items()])  # fmt: skip
    for split, c in columns.items():
        for name, values in c.items():
            if len(values) != len(sets[split]):
                raise RuntimeError(f"{m.name}: {len(values)} reference values {name!r} for {len(sets[split])} "
                                   f"{split} examples (checkpoints/{REFERENCE} from another run?)")  # fmt: skip
            sets[split].fields[name] = np.asarray(values)
    return columns


def _finish_folder(m, workdir: Path, info: dict) -> None:  # info: the manifest's, and the data URI
    """Make the saved folder (last or best weights alike) work in plain transformers as dorl prompts and
    decodes it: generation config, model_max_length, chat template (checked against the method's prompt),
    model card. Before the commit, so these files are in the manifest."""
    from dorl import model_folder
    from dorl.methods.base import prompt_format

    fmt = prompt_format(workdir)  # the format trained with (before `finish` wraps a DT folder's chat template)
    ec = m.cfg.eval
    tokens = info.get("return_tokens")  # DT: its prompts ask for the top one
    model_folder.finish(
        workdir,
        method=m.name,
        reply_token=tokens[-1] if tokens else None,
        max_new_tokens=ec.max_new_tokens,
        prompt_tokens=ec.prompt_tokens,
        facts=info,
        prompt=lambda context: m.prompt(context, info, fmt),
        notes=m.card_notes(),
    )


def _train(m, writer: ArtifactWriter, data: Artifact, base: Artifact | None, d) -> tuple[dict, dict]:
    import torch

    from dorl.engine import monitor
    from dorl.engine.checkpoint import Checkpointer
    from dorl.engine.trainer import Trainer, full_state_dict

    tc = m.train_config()
    workdir = writer.dir
    node_local = not writer.loc.is_local  # S3: every node has its own working folder
    if node_local and d.local_main:
        writer.pull("checkpoints")  # resuming on a fresh machine
    d.barrier()
    ckpt = Checkpointer(workdir / "checkpoints", d, node_local, tc.keep_checkpoints, _sync(writer), writer.remove)

    tok = _shared_tokenizer(m, ckpt, data, base, d)
    m.bind(tok)
    lm = m.model(tok, base)
    n_params = sum(p.numel() for p in lm.parameters())  # before ZeRO-3 partitions them
    # model.lora_r > 0: adapters (peft; the method's untrained tokens' rows train too); else the model unchanged
    lm = lora.adapt(lm, m.cfg.model, tok, tc.seed, m.untrained_tokens(tok))
    module = m.wrap(lm)
    n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    # The method's rows from relabel's scored candidates (None for tf): built alike on every rank, recorded once
    # (below, with the columns the method computes from the starting model).
    rows = m.training_sets(data)
    train_set, val_set = m.datasets(data, tok, rows)
    log.info(
        "%s: %d training and %d validation examples, %s real tokens per epoch",
        m.name, len(train_set), len(val_set), f"{train_set.n_tokens:,}",
    )  # fmt: skip

    def save_best(engine, step: int) -> str:
        state = full_state_dict(engine, keep=d.main)
        name = f"best-step-{step:08d}"
        if d.main:
            ckpt.save_folder(name, lambda p: (m.save(engine.module, state, p), tok.save_pretrained(p)))
        return name

    from dorl.engine.tracking import RunInfo

    name = "/".join(str(x) for x in (m.cfg.run, data.info.get("dataset"), m.name) if x)
    run = RunInfo(name, writer.uri, m.config(), tuple(m.cfg.tracking))
    trainer = Trainer(m, module, tc, train_set, val_set, d, workdir, ckpt, save_best if tc.keep_best else None, run)
    columns = _reference(m, trainer.engine.module, {"train": train_set, "validation": val_set}, ckpt, d)
    if rows is not None and d.main:
        for split, frame in rows.items():
            frame = frame.assign(**columns.get(split, {}))
            frame.to_parquet(writer.path(f"{TRAINING_SET}/{split}.parquet"), index=False)
    result = trainer.fit()
    st = result.state
    selected = "best" if tc.keep_best and st.best_dir else "last"
    state = full_state_dict(trainer.engine, keep=d.main) if selected == "last" else None
    trainer.engine.destroy()  # the next stage of a pipeline gets the GPU memory back
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if not d.main:
        return {}, {}

    if selected == "best":
        for p in (ckpt.root / st.best_dir).iterdir():
            shutil.copy2(p, workdir / p.name)
    else:
        m.save(module, state, workdir)
        tok.save_pretrained(workdir)
    saved = lora.finish(workdir, m.cfg.model.lora_merge, lambda: m.model(tok, base)) if lora.is_adapted(lm) else None
    monitor.plot(result.records, workdir / monitor.PLOT, f"train/{m.name}", m.loss_label)
    m.finish(workdir)

    info = {
        "method": m.name,
        "dataset": data.info.get("dataset"),  # evaluation checks it against its data
        "base": base.uri if base else (m.cfg.model.name if m.cfg.model.source == "pretrained" else "model.config"),
        "vocab_size": len(tok),
        "parameters": n_params,
        **({"lora": {**lora.recorded(m.cfg.model)["lora"], "saved": saved, "trainable": n_trainable}} if saved else {}),
        "world_size": d.world,
        "device": str(d.device) if d.device.type == "cpu" else torch.cuda.get_device_name(d.device),
        "precision": "bf16" if trainer.bf16 else "fp32",
        # model.*: the dtype trained in (the folder holds the fp32 master weights), kernel, recomputation
        "dtype": "bfloat16" if trainer.bf16 else "float32",
        "attn_implementation": getattr(lm.config, "_attn_implementation", None),
        "gradient_checkpointing": m.cfg.model.gradient_checkpointing,
        "zero_stage": tc.zero_stage,
        "batch": {"effective": tc.batch_size, "micro": tc.micro_batch_size, "accumulation": trainer.gas},
        "steps": result.total_steps,
        "steps_per_epoch": result.steps_per_epoch,
        "epochs": st.step / result.steps_per_epoch,
        "selected": selected,
        "selected_step": st.best_step if selected == "best" else st.step,
        "best_val_loss": st.best_val_loss,
        "keep_best_by": m.selection()[0],
        "best_score": st.best_score,
        "best_step": st.best_step,
        "resumed_from_step": result.resumed_from,
        "loss": monitor.summary(result.records),
        **({"training_set": {split: len(frame) for split, frame in rows.items()}} if rows is not None else {}),
        **m.info(),
    }
    info["validation"] = _validation_at(result.records, info["selected_step"])
    metrics = {
        "tokens": st.tokens,
        "tokens_per_s": round(result.tokens_per_s, 2),
        "train_time_s": round(st.train_time_s, 6),
        "steps_per_s": round(st.step / st.train_time_s, 4) if st.train_time_s else None,
    }
    if result.mfu is not None:
        metrics["mfu"] = round(result.mfu, 4)
    _finish_folder(m, workdir, {**info, "data": data.uri})
    log.info(
        "%s: %d steps, %s real tokens at %s tokens/s%s; output = %s weights (step %s)",
        m.name, st.step, f"{st.tokens:,}", f"{result.tokens_per_s:,.0f}",
        f", MFU {100 * result.mfu:.1f}%" if result.mfu is not None else "", selected, info["selected_step"],
    )  # fmt: skip
    return info, metrics


# ---------------------------------------------------------------- the command


@click.command("train")
@click.option(
    "--method",
    required=True,
    type=click.Choice(methods.names()),
    help=f"{methods.BASE}: the base model from the data artifact; {', '.join(methods.relabelled())}: from a relabel "
    "artifact and --base.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Training seed for this run: sets the method's TrainConfig.seed (tf.seed, finetune.seed, ilql.train.seed); "
    "the pipeline passes each of pipeline.seeds. Default: the config's.",
)
@click.option("--data", "data_uri", required=True, help="Input: a `data` artifact (tf) or a `relabel` artifact.")
@click.option("--base", "base_uri", default=None, help="The base `train/tf` artifact the methods start from.")
@click.option("--out", "out_uri", required=True, help="Output artifact URI (local folder or s3://bucket/prefix).")
@config_options
@force_option
def train_cmd(
    cfg, method: str, seed: int | None, data_uri: str, base_uri: str | None, out_uri: str, force: bool
) -> None:
    """Train a model with DeepSpeed; one process here, or N per node under torchrun / `deepspeed`.

    \b
    dorl train --method tf --data runs/demo/abcd/data --out runs/demo/abcd/tf --preset tiny
    dorl train --method dt --data runs/demo/abcd/relabel --base runs/demo/abcd/tf --out runs/demo/abcd/dt
    dorl train --method dt --seed 1 --data runs/demo/abcd/relabel --base runs/demo/abcd/tf \\
        --out runs/demo/abcd/seed-1/dt
    torchrun --nproc_per_node 8 -m dorl train --method tf --data s3://b/run/abcd/data --out s3://b/run/abcd/tf

    Killed and run again with the same arguments, it resumes from its last checkpoint.
    """

    result = train(cfg, method=method, seed=seed, data_uri=data_uri, base_uri=base_uri, out_uri=out_uri, force=force)
    click.echo(result.artifact.uri)
