"""BLEURT from a configured checkpoint (`metrics.bleurt_checkpoint`); never a made-up score.

The reference used BLEURT-20 through HF `evaluate` (TensorFlow). dorl runs BLEURT checkpoints that
plain transformers can load: a sequence-classification model with a single output, fed
(reference, candidate) as a sentence pair; the score is that logit. The BERT-based PyTorch ports
`Elron/bleurt-{tiny,base,large}-{128,512}` are of this kind. BLEURT-20 itself is a RemBERT with
custom code (`lucadiliello/BLEURT-20` needs the `bleurt-pytorch` package, which does not import
under transformers 5), so it is not supported here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import resolve_device, scored_pairs

log = logging.getLogger("dorl.metrics")


class Bleurt:
    name = "bleurt"

    def __init__(self, cfg: MetricsConfig):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = cfg.bleurt_checkpoint
        if not path:
            raise ConfigError(
                "BLEURT needs a checkpoint: set metrics.bleurt_checkpoint to a folder that transformers' "
                "AutoModelForSequenceClassification loads with one output (e.g. a download of Elron/bleurt-base-512)"
            )
        if not Path(path).is_dir() or not (Path(path) / "config.json").is_file():
            raise ConfigError(f"metrics.bleurt_checkpoint={path}: not a checkpoint folder (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"metrics.bleurt_checkpoint={path}: cannot load it with transformers ({e})") from None
        if self.model.config.num_labels != 1:
            raise ConfigError(
                f"metrics.bleurt_checkpoint={path}: a BLEURT checkpoint has one output, this one has "
                f"{self.model.config.num_labels}"
            )
        self.cfg = cfg
        self.path = path
        self.device = resolve_device(cfg.device)
        self.model.to(self.device)
        self.max_length = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)

    def identity(self) -> dict:
        from importlib import metadata

        config = json.loads((Path(self.path) / "config.json").read_text())
        return {
            "metric": "bleurt",
            "checkpoint": str(self.path),
            "architecture": (config.get("architectures") or ["?"])[0],
            "name_or_path": config.get("_name_or_path", ""),
            "max_length": self.max_length,
            "transformers": metadata.version("transformers"),
        }

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        import torch

        started = time.perf_counter()
        out = [0.0] * len(predictions)
        idx = scored_pairs(predictions, references)
        idx.sort(key=lambda i: -(len(predictions[i]) + len(references[i])))  # similar lengths share a batch
        with torch.inference_mode():
            for start in range(0, len(idx), self.cfg.batch_size):
                part = idx[start : start + self.cfg.batch_size]
                enc = self.tokenizer(
                    [references[i] for i in part],
                    [predictions[i] for i in part],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**enc).logits[:, 0].float().cpu().tolist()
                for i, v in zip(part, logits, strict=True):
                    out[i] = v
        log.debug("bleurt: %d pairs in %.2f s", len(idx), time.perf_counter() - started)
        return out
