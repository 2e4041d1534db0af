"""`dorl train` refuses bad input with one clear line, exit code 2, and writes nothing."""

import pytest

from tests.conftest import run_dorl


@pytest.fixture(scope="module")
def relabel(tmp_path_factory, data_artifact):
    from tests.fixtures import make_relabel_artifact

    return make_relabel_artifact(str(tmp_path_factory.mktemp("relabel") / "relabel"), data_artifact)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "tf", "--data", "{tmp}/nothing"], "no artifact at"),
        (["--method", "tf", "--data", "{relabel}"], "holds a 'relabel' artifact, expected 'data'"),
        (["--method", "sft", "--data", "{data}"], "Invalid value for '--method'"),
        (["--method", "ilql", "--data", "{data}", "--base", "{data}"], "holds a 'data' artifact, expected 'relabel'"),
        (["--method", "dt", "--data", "{relabel}"], "give --base"),
        (["--method", "tf_top", "--data", "{relabel}", "--base", "{data}"], "holds a 'data' artifact, expected"),
        (
            ["--method", "tf", "--data", "{data}", "--set", "tf.batch_size=10", "--set", "tf.micro_batch_size=4"],
            "batch_size=10 is not a multiple of micro_batch_size=4",
        ),
        (
            ["--method", "tf", "--data", "{data}", "--set", "tf.max_length=4096"],
            "tf.max_length=4096 exceeds model.n_positions=512",
        ),
        (
            ["--method", "tf", "--data", "{data}", "--set", "tf.zero_stage=5"],
            "'tf.zero_stage': 5 is out of range; allowed: [0, 3]",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, data_artifact, relabel, args, message):
    fill = {"tmp": str(tmp_path), "data": data_artifact.uri, "relabel": relabel.uri}
    out = tmp_path / "out"
    r = run_dorl("train", *[a.format(**fill) for a in args], "--out", str(out), "--preset", "tiny")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
