"""`dorl train --seed S`: the method's own training seed for one run, recorded in its manifest, so two seeds are
two artifacts and never one skipped for the other."""

import pytest

from dorl import config, methods
from dorl.stages.train import with_seed
from dorl.store import Artifact
from tests.conftest import run_dorl
from tests.fixtures import make_relabel_artifact


@pytest.mark.parametrize("method", methods.names())
def test_the_seed_goes_to_the_methods_own_section(method):
    cfg = config.load()
    seeded = with_seed(cfg, methods.method_class(method).config_section, 7)
    assert methods.get(method, seeded).train_config().seed == 7
    others = [
        m for m in methods.names() if methods.method_class(m).config_section != methods.get(method, cfg).config_section
    ]
    for other in others:  # every other section keeps its seed
        assert methods.get(other, seeded).train_config().seed == methods.get(other, cfg).train_config().seed


def test_train_seed_flag_is_recorded_and_another_seed_is_not_skipped(tmp_path, data_artifact, tiny_model_artifact):
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    out = str(tmp_path / "ilql")
    args = ["train", "--method", "ilql", "--data", relabel.uri, "--base", tiny_model_artifact.uri, "--out", out]
    args += ["--preset", "tiny", "--set", "ilql.train.max_steps=2", "--set", "ilql.train.micro_batch_size=4"]
    r = run_dorl(*args, "--seed", "7")
    assert r.returncode == 0, r.stderr[-3000:]
    assert Artifact(out).config["train"]["seed"] == 7
    other = run_dorl(*args, "--seed", "8")  # the same output, another seed: refused, not taken as complete
    assert other.returncode == 2 and "differs" in other.stderr and "Traceback" not in other.stderr
    assert run_dorl(*args, "--seed", "7").returncode == 0  # the same seed: complete, skipped
