"""The reference's released checkpoints: which exist, where they are, what a name says.

The paper's repository (asappresearch/dialogue-offline-rl, README "Model Checkpoints") links zip archives of
Hugging Face `Trainer` output folders named `<dataset>-<model>-<method>-lr<lr>-bs<per-device batch>-epoch<n>-
ws<warmup steps>-gas<accumulation>-<gpus>gpu.zip` (docs/released-checkpoints.md lists them).

    src = locate(FROM, base_url)   # a URL, a released name (at {base_url}/NAME.zip), a local zip or folder
    hyper, dataset = agree(src, method, dataset)   # the name's hyperparameters; --method / --dataset agree
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from dorl import log
from dorl.errors import ConfigError, DataError
from dorl.store.artifact import cache_root

logger = log.get("dorl.models")

# Where the list below comes from: the README's "Model Checkpoints" table at the repository's last commit.
REFERENCE_README = (
    "https://github.com/asappresearch/dialogue-offline-rl/blob/d601b20b81f8c7b8fff5a1ae6faf943beaefb646/README.md"
)
DEFAULT_BASE_URL = "https://public-dataset-model-store.awsdev.asapp.com/psodhi/dialogue-offline-rl/public/models"
BASE_URL_ENV = "DORL_RELEASE_BASE_URL"
# tf, tf_top and dt on each dataset (the README's ilql links are empty). No checksum is published for any.
RELEASES: tuple[str, ...] = tuple(
    f"{dataset}-distilgpt2-{method}-lr5e-4-bs4-epoch10-ws0-gas1-4gpu"
    for method in ("tf", "tf_top", "dt")
    for dataset in ("abcd", "multi_woz", "taskmaster3")
)
METHODS = ("tf", "tf_top", "tf_all", "dt")  # text methods; the reference's ilql was not released
DATASETS = {"abcd": "abcd", "multi_woz": "multiwoz22", "multiwoz22": "multiwoz22", "taskmaster3": "taskmaster3"}
NAME = re.compile(
    r"(?P<dataset>[a-z0-9_]+)-(?P<model>.+?)-(?P<method>tf_top|tf_all|tf|dt|ilql)-lr(?P<lr>\d+(?:\.\d+)?(?:e-?\d+)?)"
    r"-bs(?P<bs>\d+)-epoch(?P<epochs>\d+)-ws(?P<ws>\d+)-gas(?P<gas>\d+)-(?P<gpus>\d+)gpu"
)


@dataclass(frozen=True)
class Source:
    given: str  # --from, as typed
    kind: str  # "url", "zip" or "folder"
    name: str  # the release's name (file or folder name without .zip)
    url: str | None = None
    path: Path | None = None  # the local zip or folder (a URL's: once downloaded)


def release_base_url(base_url: str | None = None) -> str:
    """models.release_base_url, else $DORL_RELEASE_BASE_URL, else the reference README's store."""
    return (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def release_url(name: str, base_url: str | None = None) -> str:
    return f"{release_base_url(base_url)}/{name}.zip"


def locate(spec: str, base_url: str | None = None) -> Source:
    if re.match(r"https?://", spec):
        return Source(spec, "url", _stem(unquote(PurePosixPath(urlsplit(spec).path).name)), url=spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return Source(spec, "folder", path.resolve().name, path=path)
    if path.is_file():
        return Source(spec, "zip", _stem(path.name), path=path)
    if _stem(spec) in RELEASES:
        return Source(spec, "url", _stem(spec), url=release_url(_stem(spec), base_url))
    raise ConfigError(
        f"--from {spec}: no such file or folder, and neither a URL nor a released checkpoint's name "
        "(`dorl models releases` lists them)"
    )


def cache_path(src: Source) -> Path:
    """Where a URL's archive is kept (complete downloads only: `dorl.data.download` renames when whole)."""
    return cache_root() / "releases" / hashlib.sha256(src.url.encode()).hexdigest()[:12] / f"{src.name}.zip"


def _stem(name: str) -> str:
    return name[: -len(".zip")] if name.endswith(".zip") else name


def parse_name(name: str) -> dict | None:
    """The hyperparameters a release's name states, or None when it is not named that way."""
    m = NAME.fullmatch(name)
    if m is None:
        return None
    bs, gas, gpus = int(m["bs"]), int(m["gas"]), int(m["gpus"])
    return {
        "dataset": m["dataset"],
        "model": m["model"],
        "method": m["method"],
        "lr": float(m["lr"]),
        "batch_size": bs,  # per device
        "epochs": int(m["epochs"]),
        "warmup_steps": int(m["ws"]),
        "gradient_accumulation": gas,
        "gpus": gpus,
        "effective_batch": bs * gas * gpus,
    }


def agree(src: Source, method: str, dataset: str | None) -> tuple[dict | None, str]:
    """The name's hyperparameters and the dataset, once --method and --dataset agree with the name."""
    if method not in METHODS:
        raise ConfigError(f"--method {method}: dorl imports {', '.join(METHODS)} (the reference released no ilql)")
    hyper = parse_name(src.name)
    if hyper is None:
        logger.warning("%s: not named as the reference names its releases; no hyperparameters recorded", src.name)
        if dataset is None:
            raise ConfigError(f"--from {src.given}: the name does not say the dataset; give --dataset")
        return None, dataset
    named = DATASETS.get(hyper["dataset"])
    if named is None:
        raise DataError(f"{src.name}: dataset {hyper['dataset']!r} in the name is not one dorl knows")
    if hyper["method"] != method:
        raise ConfigError(f"--method {method}, but {src.name} is a '{hyper['method']}' model")
    if dataset is not None and dataset != named:
        raise ConfigError(f"--dataset {dataset}, but {src.name} was trained on {hyper['dataset']} (dorl: {named})")
    return hyper, named
