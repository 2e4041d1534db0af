"""Bad content with valid hashes (an artifact made by a user or another tool): one line, exit 2, naming the file.

Each case builds a `train/tf` (or `data`) artifact whose manifest records the bad file's own sha256, so the
store's integrity check passes and the stage meets the bad content itself.
"""

from __future__ import annotations

import json

import pytest

from dorl.store import run_stage
from tests.conftest import run_dorl
from tests.fixtures import make_data_artifact, make_tiny_model_dir


def _broken_config(d):
    (d / "config.json").write_text('{"model_type": "gpt2", "n_layer": ')


def _no_weights(d):
    (d / "model.safetensors").unlink()


def _truncated_header(d):
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:20])


def _no_added_tokens(d):
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["added_tokens"] = []
    (d / "tokenizer.json").write_text(json.dumps(tok))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("extra_special_tokens", None)
    cfg.pop("additional_special_tokens", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))


def _broken_tokenizer(d):
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": 7}}')


MODEL_CASES = {
    "broken config.json": (_broken_config, "config.json"),
    "missing weights": (_no_weights, "model"),
    "truncated safetensors header": (_truncated_header, "model"),
    "tokenizer without added_tokens": (_no_added_tokens, "special tokens"),
    "broken tokenizer.json": (_broken_tokenizer, "tokenizer"),
}


def _model_artifact(uri: str, spoil) -> None:
    def body(ctx):
        make_tiny_model_dir(ctx.out.dir)
        spoil(ctx.out.dir)
        ctx.info.update(method="tf")

    run_stage("train/tf", uri, {"fixture": spoil.__name__}, {}, body)


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_a_bad_model_folder_is_one_line_naming_it(case, tmp_path, data_artifact):
    spoil, says = MODEL_CASES[case]
    model = tmp_path / "tf"
    _model_artifact(str(model), spoil)
    r = run_dorl("evaluate", "--method", "tf", "--model", str(model), "--data", data_artifact.uri,
                 "--out", str(tmp_path / "eval"), "--preset", "tiny")  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    err = (r.stdout + r.stderr).strip()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "Traceback (most recent call last)" not in err and len(errors) == 1, err
    assert str(model) in errors[0] and says in errors[0], err
    assert not (tmp_path / "eval" / "manifest.json").exists()


def test_a_corrupt_parquet_file_is_one_line_naming_it(tmp_path):
    data = make_data_artifact(str(tmp_path / "data"))
    target = data.path("examples/test.parquet")
    art_dir = tmp_path / "bad"

    def body(ctx):
        for name in data.files:
            dest = ctx.out.path(name)
            dest.write_bytes(data.path(name).read_bytes())
        ctx.out.path("examples/test.parquet").write_bytes(target.read_bytes()[:-40] + b"\0" * 40)
        ctx.info.update(dataset="abcd")

    run_stage("data", str(art_dir), {"fixture": "corrupt"}, {}, body)
    model = tmp_path / "tf"
    _model_artifact(str(model), lambda d: None)
    r = run_dorl("evaluate", "--method", "tf", "--model", str(model), "--data", str(art_dir),
                 "--out", str(tmp_path / "eval"), "--preset", "tiny")  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    err = (r.stdout + r.stderr).strip()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "Traceback (most recent call last)" not in err and len(errors) == 1, err
    assert "examples/test.parquet" in errors[0] and "parquet" in errors[0], err
