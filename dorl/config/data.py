"""The data sections of the run configuration: `data` (preparation) and `data.sources.<name>` (your own
conversations and scored rows), and the rule for a dataset's name."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from dorl.config.loader import param
from dorl.errors import ConfigError

DATASETS: tuple[str, ...] = ("abcd", "multiwoz22", "taskmaster3")
# A dataset's name (public or your own): it names folders, Kubernetes objects and Argo tasks.
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def check_dataset_name(name: str, key: str) -> None:
    """`key`: the config key (or the option, e.g. --dataset) that holds the name."""
    if not DATASET_NAME.match(name):
        where = key if key.startswith("--") else f"config key '{key}'"
        raise ConfigError(
            f"{where}: {name!r} is not a dataset name: use 1-40 lowercase letters, digits, '_' and '-', starting "
            "with a letter or digit (it names folders and Kubernetes objects)"
        )


@dataclass
class SourceConfig:
    """Where one dataset comes from (`data.sources.NAME`): your own conversations, or a public dataset's folder."""

    RANGES: ClassVar[dict] = {"split_fractions": "[0, 1]", "split_seed": ">= 0"}
    path: str | None = param(
        None,
        "Your conversations: a JSON Lines, JSON or parquet file, a folder of such files named by split "
        "(train / validation / test), or a `datasets.save_to_disk` folder; local or s3://. For a public dataset: "
        "a folder in its upstream layout (as data.source).",
    )
    format: Literal["auto", "messages", "sharegpt"] = param(
        "auto",
        "Row format: 'messages' ({role, content} lists), 'sharegpt' ({from, value} lists under `conversations`), "
        "'auto': told from the first row.",
    )
    roles: dict[str, Literal["system", "user", "assistant", "skip"]] = param(
        factory=dict,
        help="Your role names -> system, user, assistant or skip (a turn left out), e.g. {customer: user, agent: "
        "assistant, tool: skip}; the standard names (system/user/assistant, ShareGPT's system/human/gpt) need none.",
    )
    respond_as: Literal["assistant", "user"] = param(
        "assistant", "The role dorl learns to respond as (its turns are the agent's); the other one is the customer."
    )
    split_fractions: list[float] = param(
        factory=lambda: [0.8, 0.1, 0.1],
        help="train / validation / test shares of the seeded split by conversation, used when the rows have no "
        "`split` and the files are not named by split.",
    )
    split_seed: int = param(42, "Seed of that split.")
    scored: str | None = param(
        None,
        "Your scored responses: rows of `prompt` (a messages list or text), `completion` and `reward` (a number) or "
        "`label` (a bool: TRL's KTO format); a JSON Lines, JSON or parquet file, local or s3://.",
    )
    candidates: Literal["beams", "scored", "both"] = param(
        "beams",
        "What the relabel stage makes the methods' candidates from: 'beams' (the base model's, scored by "
        "relabel.reward), 'scored' (the `scored` file's rows only: no beams, no base model needed), 'both'.",
    )
    reward_name: str | None = param(
        None,
        "What the scored file's reward measures (e.g. csat), recorded in the relabel manifest; default: its column.",
    )

    def check(self, where: str) -> None:
        f = self.split_fractions
        if len(f) != 3 or abs(sum(f) - 1) > 1e-6 or f[0] <= 0:
            raise ConfigError(
                f"config key '{where}.split_fractions': {f} is not three shares (train, validation, test) summing "
                "to 1 with train > 0"
            )
        for name in self.roles:
            if not name:
                raise ConfigError(f"config key '{where}.roles': an empty role name")
        if self.candidates != "beams" and not self.scored:
            raise ConfigError(f"config key '{where}.candidates': {self.candidates!r} needs {where}.scored (a file)")
        if self.candidates == "beams" and self.scored:
            raise ConfigError(
                f"config keys '{where}.scored' and '{where}.candidates': the scored file is used only with "
                "candidates: scored (its rows alone) or both (beside the beams)"
            )


@dataclass
class DataConfig:
    RANGES: ClassVar[dict] = {"simulate": ">= 0", "seed": ">= 0", "download_timeout": "> 0", "max_file_mb": "> 0"}
    source: str | None = param(
        None,
        "Folder with the raw files in their upstream layout; '{dataset}' is replaced by the dataset "
        "name. Unset: download the public files (checksums verified).",
    )
    simulate: int = param(
        0,
        "If > 0 and no source is given, `dorl data prepare` (and so the pipeline) simulates this many dialogues "
        "in the dataset's raw format and prepares those.",
    )
    seed: int = param(42, "Seed of the simulator.")
    skip_bad: bool = param(False, "Skip malformed dialogues (listed in the manifest) instead of failing.")
    cache_dir: str | None = param(None, "Where downloads are kept (default: $DORL_CACHE/raw, i.e. ~/.cache/dorl/raw).")
    base_url: str | None = param(
        None,
        "Base URL of the raw files: each is fetched from {base_url}/{repo}/{commit}/{path} and verified "
        "(default: $DORL_DATA_BASE_URL, else https://raw.githubusercontent.com; set it for a mirror).",
    )
    download_timeout: float = param(60.0, "Seconds without data before a download attempt fails (3 attempts).")
    sources: dict[str, SourceConfig] = param(
        factory=dict,
        help="Datasets by name, each with its own source: your own conversations (any name but the public ones, "
        "e.g. data.sources.mylogs.path=chats.jsonl), or a public dataset's folder (instead of data.source).",
    )
    max_file_mb: float = param(
        4096.0, "Largest file of your own conversations or scores read, in MiB (JSON files are parsed whole)."
    )

    def check(self, where: str) -> None:
        defaults = SourceConfig()
        for name, src in self.sources.items():
            check_dataset_name(name, f"{where}.sources.{name}")
            if name not in DATASETS:
                continue
            odd = [f.name for f in dataclasses.fields(SourceConfig) if f.name in ("format", "roles", "respond_as",
                   "split_fractions", "split_seed") and getattr(src, f.name) != getattr(defaults, f.name)]  # fmt: skip
            if odd:
                raise ConfigError(
                    f"config key '{where}.sources.{name}.{odd[0]}': {name} is a public dataset, read from its "
                    "upstream layout; only path, scored, candidates and reward_name apply to it"
                )
