"""Your own scored responses -> candidate rows (`COLUMNS`: relabel's chunk columns), for the relabel stage to turn into
the scored candidates the methods train from (dorl/stages/relabel.py).

    imported = read_scored(path, data, source_config, key, first_index=1, max_bytes=..., tmp=...)
    imported.rows      # {split: DataFrame of COLUMNS}, ready to join relabel's (or to stand alone)
    imported.facts     # the reward's name, column, range and counts, for the manifest

A row (JSON Lines, JSON, parquet, local or s3://; as for conversations, dorl/data/rows.py) holds `prompt` (a list
of {role, content} messages, TRL's conversational format, roles mapped as the dataset's conversations; or text: a
dorl context `<_soc_>…` as is, other text as one customer turn), `completion` (text, or a list of one message of the
role dorl responds as) and either `reward` (a finite number) or `label` (a bool, TRL's KTO format: true -> reward
1.0, false -> 0.0); every row the same one. Optional: `split` and `id` (the conversation the prompt comes from).

Where a row goes: the prompt is rendered as dorl renders contexts; a context equal to one of the data artifact's
examples takes that example's split, dialogue id, turn index and human response (`response`), and sorts with it.
Other contexts: the row's `split` (else a seeded split by conversation, as the dataset's own: the source config's
fractions and seed), its `id` (else the first 16 hex digits of the sha256 of the prompt as read) and the prompt's
length as turn index; their `response` is empty (logged rows have no human reference). A row's `split` field wins
over a matching example's. Rows of a context are its candidates, numbered in file order from `first_index` (1 when
they stand alone, num_candidates + 1 beside relabel's beams): candidate 0 is always the data's human response,
which only relabel's beams mode adds.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dorl.config.data import SourceConfig
from dorl.data.conversations import Conversations, RowWhere, check_text, row_id, row_split, stable_id
from dorl.data.dialogue import show
from dorl.data.rows import locate, rows
from dorl.data.splits import SPLITS
from dorl.errors import ConfigError, DataError
from dorl.text import SOC, parse_context, render_conversation

if TYPE_CHECKING:
    from dorl.store import Artifact

LABEL_REWARD = {True: 1.0, False: 0.0}
# relabel's chunk columns (dorl.relabel.candidates.CHUNK_COLUMNS, checked equal by the stage): example_index orders a
# context's candidates with its example's
COLUMNS = ["example_index", "dialogue_id", "turn_index", "context", "response", "candidate_index", "candidate",
           "reward"]  # fmt: skip


@dataclass
class Imported:
    rows: dict[str, pd.DataFrame]
    facts: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # {name: sha256}: part of the relabel stage's identity


def _examples(data: Artifact) -> tuple[dict[bytes, tuple], dict[str, int]]:
    """({sha256(context): (split, example_index, dialogue_id, turn_index, response)}, the first of equal contexts;
    the number of examples per split)."""
    import pyarrow.parquet as pq

    out: dict[bytes, tuple] = {}
    sizes = dict.fromkeys(SPLITS, 0)
    for split in SPLITS:
        name = f"examples/{split}.parquet"
        if name not in data.files:
            continue
        t = pq.read_table(data.path(name), columns=["dialogue_id", "turn_index", "context", "response"]).to_pydict()
        for i, (did, turn, ctx, resp) in enumerate(zip(*t.values(), strict=True)):
            out.setdefault(hashlib.sha256(ctx.encode()).digest(), (split, i, did, int(turn), resp))
        sizes[split] = len(t["context"])
    return out, sizes


def _context(reader: Conversations, prompt: Any, where: RowWhere) -> tuple[str, list]:
    """The dorl context of a prompt and its (standard role, text) messages (for its stable id)."""
    if isinstance(prompt, str):
        if prompt.startswith(SOC):
            try:
                turns = parse_context(prompt)
            except ValueError as e:
                raise where.error(f"not a dorl context: {e}", "prompt") from None
            for i, (_, text) in enumerate(turns):
                check_text(text, where, f"prompt (turn {i})")
            return prompt, [(s, t) for s, t in turns]
        text = check_text(prompt, where, "prompt")
        return render_conversation([("customer", text)]), [("user", text)]
    if not isinstance(prompt, list):
        raise where.error(f"expected a list of role/content messages or text, got {show(prompt)}", "prompt")
    kept = reader.messages(prompt, where, "prompt", "messages")
    return render_conversation(reader.turns(kept)), kept


def _completion(reader: Conversations, value: Any, where: RowWhere) -> str:
    if isinstance(value, str):
        return check_text(value, where, "completion")
    if not isinstance(value, list):
        want = f"text or a list of one {reader.respond_as} message"
        raise where.error(f"expected {want}, got {show(value)}", "completion")
    kept = reader.messages(value, where, "completion", "messages")
    if len(kept) != 1 or kept[0][0] != reader.respond_as:
        raise where.error(f"expected one {reader.respond_as} message, got {len(kept)} message(s)", "completion")
    return kept[0][1]


def _reward(row: dict, column: str, where: RowWhere) -> float:
    value = row.get(column)
    other = "label" if column == "reward" else "reward"
    if row.get(other) is not None:
        raise where.error(f"has both 'reward' and 'label' (the first row has {column} only)", other)
    if value is None:
        raise where.error(f"missing (the first row has {column}: every row needs it)", column)
    if column == "label":
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {show(value)}", "label")
        return LABEL_REWARD[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise where.error(f"expected a finite number, got {show(value)}", "reward")
    return float(value)


def read_scored(
    source: str, data: Artifact, src: SourceConfig, key: str, first_index: int, max_bytes: int, tmp: Path
) -> Imported:
    """The scored rows of `source` as candidates per split (`COLUMNS`), matched to `data`'s examples."""
    from dorl.data.rows import digests

    files, _ = locate(source, tmp, max_bytes)
    sha = {name: d.sha256 for name, d in digests(files, source).items()}
    reader = Conversations("messages", src.roles, src.respond_as, key)
    examples, sizes = _examples(data)
    column = None
    groups: dict[tuple, list] = {}  # (split, dialogue_id, turn_index, context) -> [(position key, row tuple)]
    order: dict[tuple, tuple] = {}  # group -> (matched example index or None, first seen)
    unsplit: dict[tuple, str] = {}  # groups without a split -> their dialogue id, for the seeded split
    n_rows = 0
    for f in files:
        for pos, row, problem in rows(f):
            where = RowWhere(f.name, f.unit, pos)
            if problem is not None:
                raise where.error(problem)
            if not isinstance(row, dict):
                raise where.error(f"expected an object (prompt, completion and reward or label), got {show(row)}")
            if column is None:
                has = [c for c in ("reward", "label") if row.get(c) is not None]
                if len(has) != 1:
                    fields = ", ".join(map(str, list(row)[:8])) or "none"
                    raise where.error(f"expected 'reward' (a number) or 'label' (a bool), not both (has: {fields})")
                column = has[0]
            given = row_id(row, where)
            split = row_split(row, where) or f.split
            if "prompt" not in row:
                raise where.error("missing", "prompt")
            context, messages = _context(reader, row["prompt"], where)
            if "completion" not in row:
                raise where.error("missing", "completion")
            completion = _completion(reader, row["completion"], where)
            reward = _reward(row, column, where)
            hit = examples.get(hashlib.sha256(context.encode()).digest())
            if hit is not None and (split is None or split == hit[0]):
                split, index, did, turn, human = hit
                did = given or did
            else:
                index, human = None, ""
                did = given or stable_id(messages)
                turn = len(parse_context(context))
            group = (split, did, turn, context)
            if group not in groups:
                groups[group], order[group] = [], (index, n_rows)
                if split is None:
                    unsplit[group] = did
            groups[group].append((did, turn, context, human, completion, reward))
            n_rows += 1
    if column is None:
        raise DataError(f"{source}: no rows")
    seeded = _seeded(unsplit, src)
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    for group, members in groups.items():
        split = group[0] or seeded[group]
        per_split[split].append((group, members))
    out, matched = {}, 0
    for split, part in per_split.items():
        n_examples = sizes[split]
        # matched contexts sort with their example; the others after every example, in file order
        part.sort(key=lambda gm: (0, order[gm[0]][0]) if order[gm[0]][0] is not None else (1, order[gm[0]][1]))
        records = []
        for k, (group, members) in enumerate(part):
            index = order[group][0]
            matched += len(members) if index is not None else 0
            index = index if index is not None else n_examples + k
            for j, (did, turn, context, human, completion, reward) in enumerate(members):
                records.append((index, did, turn, context, human, first_index + j, completion, reward))
        out[split] = pd.DataFrame(records, columns=COLUMNS).astype(
            {"example_index": "int64", "turn_index": "int32", "candidate_index": "int32", "reward": "float64"}
        )
    rewards = pd.concat([t["reward"] for t in out.values()])
    facts = {
        "name": src.reward_name or column,
        "column": column,
        "file": source,
        "rows": n_rows,
        "contexts": len(groups),
        "matched_rows": matched,  # rows whose context is one of the data artifact's examples
        "min": float(rewards.min()),
        "max": float(rewards.max()),
        "mean": round(float(rewards.mean()), 6),
        "first_candidate_index": first_index,
    }
    if column == "label":
        facts["label_rewards"] = {"true": LABEL_REWARD[True], "false": LABEL_REWARD[False]}
    return Imported(out, facts, sha)


def scored_source(
    cfg, data: Artifact, scored: str | None, base_uri: str | None
) -> tuple[str | None, SourceConfig, str]:
    """(the scored file or None, how to read it, its config key). Its rows are read as the data was: the data
    artifact's role map and respond_as, its seeded split's fractions and seed for contexts it does not hold."""
    dataset = data.info.get("dataset", "data")
    key = f"data.sources.{dataset}"
    own = cfg.data.sources.get(dataset) or SourceConfig()
    if scored is None and own.candidates != "beams":
        scored = own.scored
        if own.candidates == "scored" and base_uri is not None:
            raise ConfigError(
                f"config key '{key}.candidates': 'scored' makes the candidates your scored rows alone: run relabel "
                f"without --base, or set {key}.candidates=both"
            )
        if own.candidates == "both" and base_uri is None:
            raise ConfigError(f"config key '{key}.candidates': 'both' adds your rows to the beams: give --base")
    if base_uri is None and scored is None:
        raise ConfigError(
            "relabel needs --base (the base model, whose beam candidates are scored) or --scored FILE (your own scored "
            f"responses; or {key}.scored with {key}.candidates: scored)"
        )
    read = data.config.get("read", {})
    reader = SourceConfig(
        roles=data.info.get("roles", {}),
        respond_as=data.info.get("respond_as", "assistant"),
        split_fractions=read.get("split_fractions", own.split_fractions),
        split_seed=read.get("split_seed", own.split_seed),
        reward_name=own.reward_name,
    )
    return scored, reader, key


def _seeded(unsplit: dict[tuple, str], src: SourceConfig) -> dict[tuple, str]:
    """Groups without a split, by their conversation: the dataset's seeded split (dorl.data.custom.seeded)."""
    from dorl.data.custom import seeded
    from dorl.data.dialogue import Dialogue

    ids = list(dict.fromkeys(unsplit.values()))
    parts = seeded([Dialogue(i, []) for i in ids], src.split_fractions, src.split_seed)
    split_of = {d.id: s for s, part in parts.items() for d in part}
    return {g: split_of[did] for g, did in unsplit.items()}
