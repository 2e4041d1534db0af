"""Every numeric config key is either range-checked (refused outside, with key, value and range in the message)
or meaningful at any value; cross-key rules, secrets in k8s.env, malformed URIs and non-text files are refused."""

import dataclasses
import math
import re
import typing

import pytest

from dorl import config
from dorl.config.loader import describe
from dorl.config.schema import RunConfig
from dorl.errors import ConfigError
from tests.conftest import run_dorl

ANY_VALUE = {"relabel.return_edges"}  # bin edges: any ascending reals (RelabelConfig.check checks the order)
NUMERIC = [(k, t, d) for k, t, d, _ in describe(RunConfig) if re.search(r"\b(int|float)\b", t)]


def _range_of(key: str) -> str | None:
    *path, leaf = key.split(".")
    cls = RunConfig
    for part in path:  # <name>: the sections of a mapping of names (data.sources.<name>.split_seed)
        cls = typing.get_args(cls)[1] if part == "<name>" else typing.get_type_hints(cls)[part]
        assert dataclasses.is_dataclass(cls) or typing.get_origin(cls) is dict
    return getattr(cls, "RANGES", {}).get(leaf)


def _outside(spec: str) -> list[float]:
    if m := re.match(r"^(>=|>)\s*(\S+)$", spec):
        x = float(m.group(2))
        return [x - 1 if m.group(1) == ">=" else x, math.nan, math.inf]
    m = re.match(r"^([(\[])\s*(\S+)\s*,\s*(\S+)\s*([)\]])$", spec)
    lo, hi = float(m.group(2)), float(m.group(3))
    return [lo if m.group(1) == "(" else lo - 1, hi if m.group(4) == ")" else hi + 1, math.nan, math.inf, -math.inf]


def _fmt(v, t: str) -> str:
    if "list" in t:
        return f"[{int(v)}, 1]" if "int" in t and "float" not in t else f"[{v}, 0.5]"
    if v in (math.inf, -math.inf):
        return ".inf" if v > 0 else "-.inf"
    return "nan" if v != v else (str(int(v)) if "int" in t and v == int(v) else str(v))


@pytest.mark.parametrize("key,tp,default", NUMERIC, ids=[k for k, *_ in NUMERIC])
def test_every_numeric_key_is_range_checked(key, tp, default):
    spec = _range_of(key)
    if key in ANY_VALUE:
        assert spec is None
        return
    assert spec is not None, f"{key} has no range: add it to its class's RANGES"
    config.load(preset="tiny")  # the defaults and the preset are inside every range
    key = key.replace("<name>", "mine")
    for v in _outside(spec):
        if not math.isfinite(v) and "int" in tp and "float" not in tp:
            continue  # NaN and infinity are not ints: the type check refuses them
        with pytest.raises(ConfigError) as e:
            config.load(sets=[f"{key}={_fmt(v, tp)}"])
        msg = str(e.value)
        assert f"'{key}" in msg and "out of range" in msg and spec in msg, msg


@pytest.mark.parametrize(
    "sets,match",
    [
        (["model.n_embd=65", "model.n_head=2"], r"'model.n_embd' and 'model.n_head': width 65 is not divisible by 2"),
        (["relabel.num_beams=2", "relabel.num_candidates=3"], r"'relabel.num_beams': 2 is fewer than num_candidates"),
        (["k8s.env={AWS_SECRET_ACCESS_KEY: abc}"], r"'k8s.env.AWS_SECRET_ACCESS_KEY': secrets .* k8s.s3_secret"),
        (["k8s.env={HF_TOKEN: abc}"], r"k8s.env.HF_TOKEN"),
        (["k8s.env={DB_PASSWORD: abc}"], r"k8s.env.DB_PASSWORD"),
        (["root=s3://"], r"'root': s3://: an S3 URI needs a bucket"),
        (["root=s3:/bucket/x"], r"'root': malformed URI 's3:/bucket/x'"),
        # rules that lived in the stages, the engine and the methods (one place now: the config)
        (["relabel.splits=[]"], r"'relabel.splits': empty"),
        (["relabel.return_bins=3", "relabel.return_edges=[0.9, 0.1]"], r"'relabel.return_edges': .0.9, 0.1. is not 2"),
        (["relabel.return_edges=[0.2, 0.5]"], r"'relabel.return_edges': .* is not 1 ascending values"),
        (["tf.betas=[0.9]"], r"'tf.betas': expected two numbers"),
        (["finetune.batch_size=12"], r"'finetune.batch_size' and 'finetune.micro_batch_size': batch_size=12 is not a"),
        (["ilql.train.micro_batch_size=5"], r"'ilql.train.batch_size' and 'ilql.train.micro_batch_size'"),
        (["tf.max_length=1024", "model.n_positions=512"], r"'tf.max_length' and 'model.n_positions'"),
        (["model.source=pretrained"], r"'model.tokenizer' and 'model.source': tokenizer=bpe trains a new vocabulary"),
        (["metrics.bertscore_layers=7"], r"'metrics.bertscore_layers': 7 is out of range for bertscore_model=minilm"),
    ],
)
def test_bad_values_across_keys_are_refused(sets, match):
    with pytest.raises(ConfigError, match=match):
        config.load(preset="tiny", sets=sets)


@pytest.mark.parametrize(
    "item",
    ["tf.lr=.inf", "tf.lr=1e300", "tf.lr=2", "ilql.train.lr=.inf", "finetune.eps=.inf", "ilql.beta=1e400",
     "tf.weight_decay=.inf", "model.bpe_vocab_size=5", "model.bpe_vocab_size=256"],
)  # fmt: skip
def test_infinite_and_absurd_values_are_refused(item):
    """No range holds infinity (before: `tf.lr=.inf` and `1e300` passed `> 0`); a learning rate is at most 1; a
    trained BPE has at least its 256 bytes and <|endoftext|> (before: 5 was accepted and gave 257 anyway)."""
    with pytest.raises(ConfigError, match=r"out of range; allowed: "):
        config.load(preset="tiny", sets=[item])


def test_the_smallest_bpe_and_the_largest_lr_are_accepted():
    cfg = config.load(preset="tiny", sets=["model.bpe_vocab_size=257", "tf.lr=1"])
    assert cfg.model.bpe_vocab_size == 257 and cfg.tf.lr == 1.0


def test_ilql_polyak_bounds_are_the_ranges():
    """alpha in (0, 1], every >= 1 (a second check in the ILQL method said [0, 1] and >= 0: gone). At alpha = 0 or
    every = 0 the target heads never leave their random initialisation, and V regresses toward noise."""
    assert config.load(sets=["ilql.polyak_alpha=1", "ilql.polyak_every=1"]).ilql.polyak_alpha == 1.0
    for key in ("ilql.polyak_alpha=0", "ilql.polyak_every=0"):
        with pytest.raises(ConfigError, match=r"out of range; allowed: (\(0, 1\]|>= 1)"):
            config.load(sets=[key])


def test_harmless_env_is_accepted():
    assert config.load(sets=["k8s.env={AWS_REGION: eu-west-1}"]).k8s.env == {"AWS_REGION": "eu-west-1"}


def test_binary_config_file_and_typo_uris_are_one_line_errors(tmp_path, data_artifact):
    binary = tmp_path / "c.yaml"
    binary.write_bytes(bytes(range(256)))
    r = run_dorl("config", "show", "--config", str(binary))
    assert r.returncode == 2 and "is not text" in r.stderr and "Traceback" not in r.stderr
    out = tmp_path / "work"
    out.mkdir()
    r = run_dorl("data", "stats", "s3:/bucket/x", cwd=out)
    assert r.returncode == 2 and "malformed URI 's3:/bucket/x'" in r.stderr
    assert not (out / "s3:").exists()
    r = run_dorl("artifacts", "ls", "s3://b/x", env={"AWS_ENDPOINT_URL": "notaurl"})
    assert r.returncode == 2 and "AWS_ENDPOINT_URL='notaurl' is not a URL" in r.stderr
    r = run_dorl("artifacts", "ls", "s3://b/x", env={"DORL_S3_MAX_ATTEMPTS": "abc"})
    assert r.returncode == 2 and "DORL_S3_MAX_ATTEMPTS='abc': expected a positive integer" in r.stderr
    (tmp_path / "tree" / "a").mkdir(parents=True)
    (tmp_path / "tree" / "a" / "broken").symlink_to(tmp_path / "nowhere")
    r = run_dorl("artifacts", "ls", "-r", str(tmp_path / "tree"))
    assert r.returncode == 0 and "Traceback" not in r.stderr
