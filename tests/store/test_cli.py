"""`dorl artifacts ls|show|cat` on disk and in S3, and user errors without tracebacks."""

import json

import pytest

from dorl.store import Location, run_stage
from tests.conftest import run_dorl


def _make_run(base: str) -> None:
    def body(ctx):
        ctx.out.path("metrics.json").write_text(json.dumps({"bleu": 0.25}))
        ctx.out.path("sub/notes.txt").write_text("hello store\n")

    run_stage("evaluate", f"{base}/demo/abcd/eval/dt", {"n": 1}, {}, body)
    Location(f"{base}/demo/abcd/tf").write_bytes(".dorl-pending.json", b"{}")


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "runs")
    return f"s3://{request.getfixturevalue('s3')}/runs"


def test_ls_show_cat(base):
    _make_run(base)
    r = run_dorl("artifacts", "ls", f"{base}/demo/abcd")
    assert r.returncode == 0, r.stderr
    assert "eval/" in r.stdout and "tf/" in r.stdout and "incomplete" in r.stdout
    r = run_dorl("artifacts", "ls", "-r", base)
    assert "dt/" in r.stdout and "evaluate" in r.stdout and "complete" in r.stdout
    r = run_dorl("artifacts", "ls", f"{base}/demo/abcd/eval/dt")
    assert "metrics.json" in r.stdout and "sub/notes.txt" in r.stdout
    r = run_dorl("artifacts", "show", f"{base}/demo/abcd/eval/dt")
    assert r.returncode == 0 and "stage evaluate" in r.stdout and "metrics.json" in r.stdout
    r = run_dorl("artifacts", "show", "--json", f"{base}/demo/abcd/eval/dt")
    assert json.loads(r.stdout)["stage"] == "evaluate"
    r = run_dorl("artifacts", "cat", f"{base}/demo/abcd/eval/dt/sub/notes.txt")
    assert r.returncode == 0 and r.stdout == "hello store\n"
    r = run_dorl("artifacts", "cat", f"{base}/demo/abcd/eval/dt/manifest.json")
    assert json.loads(r.stdout)["files"]["metrics.json"]["size"] > 0


def test_cat_refuses_corrupt_file(base):
    _make_run(base)
    Location(f"{base}/demo/abcd/eval/dt").write_bytes("metrics.json", b'{"bleu": 1.0}')
    r = run_dorl("artifacts", "cat", f"{base}/demo/abcd/eval/dt/metrics.json")
    assert r.returncode == 2
    assert "metrics.json: content does not match the sha256 in its manifest" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["ls", "gs://bucket/runs"], "unknown URI scheme 'gs://'"),
        (["ls", "s3://bucket/../etc"], "no '..'"),
        (["show", "/nonexistent/dorl/run"], "no artifact at /nonexistent/dorl/run"),
        (["cat", "/nonexistent/dorl/run/file.txt"], "not a file of a complete artifact"),
    ],
)
def test_user_errors(args, message):
    r = run_dorl("artifacts", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_bucket_and_unreadable_manifest(s3, tmp_path):
    r = run_dorl("artifacts", "ls", "s3://dorl-no-such-bucket/runs")
    assert r.returncode == 2 and "bucket 'dorl-no-such-bucket' does not exist" in r.stderr
    bad = tmp_path / "art"
    bad.mkdir()
    (bad / "manifest.json").write_text("{oops")
    r = run_dorl("artifacts", "show", str(bad))
    assert r.returncode == 2 and "manifest.json is unreadable" in r.stderr and "Traceback" not in r.stderr
