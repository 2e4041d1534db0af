"""`dorl models import`: a release in the reference's layout becomes a dorl train artifact that evaluate, generate,
report, relabel and train (--base) take as they take dorl's own; every unsafe or inconsistent release is refused in
one line, exit 2, with nothing written."""

from __future__ import annotations

import hashlib
import json
import pickle
import stat
import sys
import zipfile

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from dorl import config
from dorl.cli import cli, main
from dorl.models import reference, released
from dorl.store import Artifact
from dorl.text import REWARD_ONE, REWARD_ZERO, SPECIAL_TOKENS, render_conversation
from tests.conftest import run_dorl
from tests.models.conftest import Payload, make_release, name, zip_folder

EVAL = ["eval.n_examples=6", "eval.num_responses=1", "eval.max_new_tokens=8"]


def dorl(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The real `dorl` entrypoint, in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["dorl", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


def import_args(method: str, src, out) -> list[str]:
    return ["models", "import", "--method", method, "--from", str(src), "--out", str(out), "--preset", "tiny"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory, releases):
    """dt through the real CLI in a subprocess (as a user runs it), tf through the command in process, tf_top (a
    folder, safetensors) through the library."""
    root = tmp_path_factory.mktemp("imported")
    r = run_dorl(*import_args("dt", releases["dt"]["zip"], root / "dt"), "--set", "eval.max_new_tokens=8")
    assert r.returncode == 0, r.stderr[-3000:]
    res = CliRunner().invoke(cli, import_args("tf", releases["tf"]["zip"], root / "tf"))
    assert res.exit_code == 0, res.output
    out = {"dt": Artifact(str(root / "dt")), "tf": Artifact(str(root / "tf"))}
    src = reference.locate(str(releases["tf_top"]["folder"]))
    out["tf_top"] = released.import_release(src, src.path, str(root / "tf_top"), method="tf_top").artifact
    return out


def test_the_artifact_is_a_dorl_train_artifact_with_its_source(imported, releases):
    art = imported["dt"]
    assert art.stage == "train/dt"
    info = art.info
    assert info["released"] is True and info["method"] == "dt" and info["dataset"] == "abcd"
    assert info["return_tokens"] == [REWARD_ZERO, REWARD_ONE]
    zipped = releases["dt"]["zip"]
    assert info["source"]["archive_sha256"] == hashlib.sha256(zipped.read_bytes()).hexdigest()
    assert info["source"]["path"] == str(zipped.resolve()) and info["source"]["kind"] == "zip"
    assert info["release"] == {
        "dataset": "abcd", "model": "distilgpt2", "method": "dt", "lr": 5e-4, "batch_size": 4, "epochs": 10,
        "warmup_steps": 0, "gradient_accumulation": 1, "gpus": 4, "effective_batch": 16,
    }  # fmt: skip
    assert info["trainer_state"]["global_step"] == 20 and info["trainer_state"]["last_eval"]["eval_loss"] == 2.5
    assert f"{name('dt')}/training_args.bin" in info["source"]["ignored"]
    assert f"{name('dt')}/checkpoint-10/optimizer.pt" in info["source"]["ignored"]
    # safetensors only: no pickle crosses into the artifact; the training arguments' pickle was never opened
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= set(art.files)
    assert "release/trainer_state.json" in art.files
    assert not any(f.endswith((".bin", ".pt")) for f in art.files)
    assert not (zipped.parent / f".{name('dt')}-training-args-ran").exists()
    card = art.path("README.md").read_text()
    assert "imported by `dorl models import`" in card and info["source"]["archive_sha256"] in card
    # the weights are the release's, exactly (the tied head included)
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(art.local_dir())
    got = lm.state_dict()
    for key, value in releases["dt"]["state"].items():
        assert torch.equal(got[key], value), key
    assert imported["tf_top"].info["weights_dtype"] == "F32" and imported["tf_top"].info["source"]["kind"] == "folder"


def test_plain_transformers_prompts_as_dorl_generate(imported):
    """The folder works in plain transformers: its chat template is DT's prompt (asking for <_reward_one_>),
    and greedy generation from generation_config.json answers what `dorl generate` answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dorl.model_folder import SAMPLE

    folder = imported["dt"].local_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    messages = [{"role": "user" if s == "customer" else "assistant", "content": t} for s, t in SAMPLE]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith(f"{REWARD_ONE}<_rep_start_>") and text.count(REWARD_ONE) == 3
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    out = model.generate(**inputs)
    plain = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    res = CliRunner().invoke(
        cli, ["generate", "--model", str(folder), "--context", render_conversation(SAMPLE), "--json", "-k", "1",
              "--preset", "tiny", "--set", "eval.max_new_tokens=8"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    [row] = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert row["prompt"] == text and row["responses"][0] == plain


def test_evaluate_and_report_beside_dorls_own(imported, tiny_model_artifact, data_artifact, tmp_path):
    from dorl.stages.evaluate import evaluate
    from dorl.stages.report import report

    cfg = config.load(preset="tiny", sets=EVAL + ["report.bootstrap=50"])
    evals = {
        "tf": evaluate(cfg, method="tf", model_uri=tiny_model_artifact.uri, data_uri=data_artifact.uri,
                       out_uri=str(tmp_path / "eval-tf")).artifact,
        "dt (released)": evaluate(cfg, method="dt", model_uri=imported["dt"].uri, data_uri=data_artifact.uri,
                                  out_uri=str(tmp_path / "eval-dt-released")).artifact,
        "tf (released)": evaluate(cfg, method="tf", model_uri=imported["tf"].uri, data_uri=data_artifact.uri,
                                  out_uri=str(tmp_path / "eval-tf-released")).artifact,
    }  # fmt: skip
    dt_eval = evals["dt (released)"]
    assert dt_eval.info["released"] is True and "released" not in evals["tf"].info
    assert dt_eval.json("metrics.json")["n_examples"] == 6
    art = report(cfg, eval_uris=[e.uri for e in evals.values()], out_uri=str(tmp_path / "report")).artifact
    table = pd.read_csv(art.path("results.csv"))
    assert list(dict.fromkeys(table["method"])) == ["tf", "tf (released)", "dt (released)"]  # each beside its own
    assert "| tf (released) |" in art.path("results.md").read_text()
    assert {"eval_abcd_tf", "eval_abcd_tf_released", "eval_abcd_dt_released"} == set(art.manifest["inputs"])
    # the released tf is compared with dorl's tf, the baseline, on the same examples
    assert table[(table.method == "tf (released)") & (table.metric == "bertscore")]["p_value"].notna().all()


def test_a_released_tf_is_a_base_for_relabel_and_train(imported, data_artifact, tmp_path):
    from dorl.stages.relabel import relabel
    from dorl.stages.train import train
    from tests.fixtures import make_relabel_artifact

    cfg = config.load(preset="tiny", sets=["relabel.splits=[test]", "relabel.max_new_tokens=4"])
    art = relabel(cfg, data_uri=data_artifact.uri, base_uri=imported["tf"].uri, out_uri=str(tmp_path / "rl")).artifact
    cand = pd.read_parquet(art.path("candidates/test.parquet"))
    assert len(cand) == 6 * len(pd.read_parquet(data_artifact.path("examples/test.parquet")))
    assert art.manifest["inputs"]["model"]["uri"] == imported["tf"].uri

    data = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    steps = ["finetune.max_steps=1", "finetune.batch_size=4", "finetune.micro_batch_size=4", "finetune.eval_every=0"]
    dt = train(config.load(preset="tiny", sets=steps), method="dt", data_uri=data.uri, base_uri=imported["tf"].uri,
               out_uri=str(tmp_path / "dt")).artifact  # fmt: skip
    assert dt.info["base"] == imported["tf"].uri and dt.info["vocab_size"] == imported["tf"].info["vocab_size"]


def test_into_s3_and_again(releases, s3):
    """Written through the artifact store to S3; the same release imported again is skipped."""
    src = reference.locate(str(releases["tf"]["zip"]))
    uri = f"s3://{s3}/released/abcd/train/tf"
    first = released.import_release(src, src.path, uri, method="tf")
    again = released.import_release(src, src.path, uri, method="tf")
    assert not first.skipped and again.skipped
    art = Artifact(uri)
    assert art.stage == "train/tf" and art.info["released"] and "model.safetensors" in art.files
    assert art.path("README.md").read_text().count("imported by `dorl models import`") == 1


def test_name_method_and_dataset_must_agree(releases, tmp_path, monkeypatch, capsys):
    code, err = dorl(monkeypatch, capsys, *import_args("dt", releases["tf"]["zip"], tmp_path / "x"))
    assert code == 2 and "--method dt, but abcd-distilgpt2-tf-" in err and "is a 'tf' model" in err
    args = import_args("tf", releases["tf"]["zip"], tmp_path / "x") + ["--dataset", "multiwoz22"]
    code, err = dorl(monkeypatch, capsys, *args)
    assert code == 2 and "--dataset multiwoz22, but" in err
    assert not (tmp_path / "x").exists()
    assert (
        reference.parse_name("multi_woz-gpt2-medium-tf_top-lr1e-4-bs16-epoch5-ws0-gas1-1gpu")["model"] == "gpt2-medium"
    )
    assert reference.DATASETS["multi_woz"] == "multiwoz22"


# ---------------------------------------------------------------- refusals: one line, exit 2, nothing written


def _refused(monkeypatch, capsys, method, src, out, *phrases):
    code, err = dorl(monkeypatch, capsys, *import_args(method, src, out))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-3000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    assert not out.exists()  # not even a pending marker
    return errors[0]


@pytest.mark.parametrize("how", ["raw pickle", "torch.save"])
def test_a_pickle_payload_is_refused_and_never_runs(how, base_bpe, tmp_path, monkeypatch, capsys):
    folder = tmp_path / name("tf")
    make_release(folder, base_bpe)
    marker = tmp_path / "payload-ran"
    if how == "raw pickle":
        (folder / "pytorch_model.bin").write_bytes(
            pickle.dumps({"transformer.wte.weight": Payload(marker)}, protocol=2)
        )
    else:
        torch.save({"transformer.wte.weight": Payload(marker)}, folder / "pytorch_model.bin")
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Payload(live)))  # the payload is real: plain unpickling runs it
    assert live.exists()
    zipped = zip_folder(folder, tmp_path / f"{name('tf')}.zip")
    _refused(monkeypatch, capsys, "tf", zipped, tmp_path / "out", "pytorch_model.bin refused", "none of it was run")
    assert not marker.exists()


def _zip_with(tmp_path, releases, member: zipfile.ZipInfo | str, data: bytes = b"x"):
    """The tf release's zip plus one more member."""
    src = releases["tf"]["zip"]
    dest = tmp_path / src.name
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dest, "w") as b:
        for info in a.infolist():
            b.writestr(info, a.read(info))
        b.writestr(member, data)
    return dest


def _link(member: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(member)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (f"{name('tf')}/../../escape.txt", "a '..' part"),
        ("/etc/dorl-escape", "an absolute path"),
        (_link(f"{name('tf')}/vocab.txt"), "a symbolic link"),
    ],
    ids=["traversal", "absolute", "symlink"],
)
def test_an_unsafe_member_is_refused_before_extraction(member, why, releases, tmp_path, monkeypatch, capsys):
    zipped = _zip_with(tmp_path, releases, member, b"/etc/passwd")
    line = _refused(monkeypatch, capsys, "tf", zipped, tmp_path / "out", why, "nothing was extracted")
    assert str(zipped) in line
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_special_tokens_in_another_order_are_refused(base_bpe, tmp_path, monkeypatch, capsys):
    order = list(SPECIAL_TOKENS)
    i, j = order.index(REWARD_ONE), order.index(REWARD_ZERO)
    order[i], order[j] = order[j], order[i]  # DT's return tokens swapped: its prompts would ask for the wrong one
    folder = tmp_path / name("dt")
    make_release(folder, base_bpe, order=order)
    zipped = zip_folder(folder, tmp_path / f"{name('dt')}.zip")
    _refused(monkeypatch, capsys, "dt", zipped, tmp_path / "out", f"{REWARD_ONE} has id", "the reference's order")


def test_embeddings_that_do_not_match_the_tokenizer_are_refused(base_bpe, tmp_path, monkeypatch, capsys):
    folder = tmp_path / name("tf")
    make_release(folder, base_bpe, resize=False)  # the special tokens added, the embeddings never resized
    _refused(monkeypatch, capsys, "tf", folder, tmp_path / "out", "embeddings have 300 rows", "315 tokens")


def test_a_wrong_sha256_or_a_non_zip_is_refused(releases, tmp_path, monkeypatch, capsys):
    args = import_args("tf", releases["tf"]["zip"], tmp_path / "out") + ["--sha256", "0" * 64]
    code, err = dorl(monkeypatch, capsys, *args)
    assert code == 2 and "expected " + "0" * 64 in err and not (tmp_path / "out").exists()
    fake = tmp_path / f"{name('tf')}.zip"
    fake.write_bytes(b"PK not really")
    _refused(monkeypatch, capsys, "tf", fake, tmp_path / "out", "not a readable zip archive")


def test_other_weight_formats_are_refused(base_bpe, tmp_path, monkeypatch, capsys):
    folder = tmp_path / name("tf")
    make_release(folder, base_bpe)
    (folder / "pytorch_model.bin").rename(folder / "model.ckpt")
    _refused(monkeypatch, capsys, "tf", folder, tmp_path / "out", "no model.safetensors or pytorch_model.bin")


# ---------------------------------------------------------------- from a URL or a released name


@pytest.fixture
def mirror(releases, tmp_path):
    """A static server holding the tf release: yields (base URL, request log)."""
    import functools
    import http.server
    import shutil
    import threading

    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(releases["tf"]["zip"], root)
    seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_from_a_url_or_a_released_name_through_the_mirror(mirror, releases, tmp_path, monkeypatch, capsys):
    from dorl.data import download

    base, seen = mirror
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    sha = hashlib.sha256(releases["tf"]["zip"].read_bytes()).hexdigest()
    code, err = dorl(monkeypatch, capsys, *import_args("tf", f"{base}/{name('tf')}.zip", tmp_path / "a"))
    assert code == 0, err
    src = Artifact(str(tmp_path / "a")).info["source"]
    assert (src["kind"], src["url"], src["archive_sha256"]) == ("url", f"{base}/{name('tf')}.zip", sha)
    # a released name is fetched from models.release_base_url (a mirror), or $DORL_RELEASE_BASE_URL
    args = import_args("tf", name("tf"), tmp_path / "b") + ["--set", f"models.release_base_url={base}", "--sha256", sha]
    code, err = dorl(monkeypatch, capsys, *args)
    assert code == 0, err
    assert Artifact(str(tmp_path / "b")).info["source"]["expected_sha256"] == sha
    monkeypatch.setenv(reference.BASE_URL_ENV, base)
    assert reference.locate(name("dt")).url == f"{base}/{name('dt')}.zip"
    code, err = dorl(monkeypatch, capsys, *import_args("tf", name("tf"), tmp_path / "c"))
    assert code == 0, err
    assert seen == [f"/{name('tf')}.zip"]  # one URL, fetched once: then from the cache (complete, sha256 checked)
    # offline, or a mirror without it: one line that says what to do, nothing written
    monkeypatch.setenv(reference.BASE_URL_ENV, "http://127.0.0.1:9")
    line = _refused(monkeypatch, capsys, "dt", name("dt"), tmp_path / "d", "cannot download release", "--from FILE")
    assert "http://127.0.0.1:9/" in line
    _refused(monkeypatch, capsys, "dt", "no-such-release", tmp_path / "e", "neither a URL nor a released checkpoint")


def test_the_known_releases_are_the_readme_links():
    """The nine links of the reference README's "Model Checkpoints" table (tf, tf_top, dt x three datasets)."""
    assert len(reference.RELEASES) == 9
    for n in reference.RELEASES:
        hyper = reference.parse_name(n)
        assert hyper["model"] == "distilgpt2" and hyper["method"] in ("tf", "tf_top", "dt")
        assert reference.DATASETS[hyper["dataset"]] in ("abcd", "multiwoz22", "taskmaster3")
    assert reference.release_url(reference.RELEASES[0]) == (
        "https://public-dataset-model-store.awsdev.asapp.com/psodhi/dialogue-offline-rl/public/models/"
        "abcd-distilgpt2-tf-lr5e-4-bs4-epoch10-ws0-gas1-4gpu.zip"
    )
