"""The method registry: every place reads it, and adding a method is one module plus one registry line.

A method without settings is a class and a "module:Class" line; one with settings of its own declares their
section beside it and names it in its `Entry` (tests/methods/reward_above.py). Either trains from a relabel
artifact made before it existed: relabel hands the methods scored candidates, and each builds its own set.
"""

import subprocess
import sys

import pandas as pd
import pytest

from dorl import config, methods
from dorl.errors import ConfigError
from dorl.methods.lines import Lines
from dorl.report.table import METHOD_ORDER
from dorl.stages.evaluate import evaluate_cmd
from dorl.stages.train import train_cmd
from dorl.store import Artifact
from tests.conftest import REPO
from tests.fixtures import make_relabel_artifact
from tests.methods.helpers import FAST, train_and_evaluate


class TfAboveHalfThreshold(Lines):
    """tf_top at reward > 0.3 instead of the top return bin: the whole method."""

    def rows(self, candidates, return_bins: int):
        return candidates["reward"] > 0.3


def test_a_new_method_is_one_class_and_one_registry_line(tmp_path, data_artifact, tiny_model_artifact, monkeypatch):
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)  # made before the method exists
    monkeypatch.setitem(methods.REGISTRY, "tf_top03", "tests.methods.test_registry:TfAboveHalfThreshold")
    model, ev = train_and_evaluate(tmp_path, "tf_top03", relabel, tiny_model_artifact, data_artifact)
    cand = pd.read_parquet(relabel.path("candidates/train.parquet"))
    lines = pd.read_parquet(model.path("training_set/train.parquet"))
    assert len(lines) == int((cand["reward"] > 0.3).sum()) > 0
    assert model.stage == "train/tf_top03" and model.info["data"]["train"]["lines"] == len(lines)
    assert ev.json("metrics.json")["method"] == "tf_top03" and ev.info["n_examples"] > 0


# ---------------------------------------------------------------- a method with its own settings
LINE = (
    "from dorl.methods import registry as r; r.REGISTRY['reward_above'] = r.Entry("
    "'tests.methods.reward_above:RewardAbove', 'reward_above', 'tests.methods.reward_above:RewardAboveConfig')"
)
RELABEL = ["relabel.splits=[train, validation]", "relabel.num_candidates=2", "relabel.num_beams=2",
           "relabel.max_new_tokens=6", "relabel.reward=bleu"]  # fmt: skip
ENTRY = methods.Entry(
    "tests.methods.reward_above:RewardAbove", "reward_above", "tests.methods.reward_above:RewardAboveConfig"
)


def dorl_with_the_line(*args: str) -> subprocess.CompletedProcess:
    """`dorl ARGS` with the registry line added before anything else runs (as in dorl/methods/registry.py)."""
    code = f"import sys; {LINE}; from dorl.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def test_a_method_with_its_own_settings_trains_from_an_existing_relabel_artifact(
    tmp_path, data_artifact, tiny_model_artifact, monkeypatch
):
    from dorl.stages.evaluate import evaluate
    from dorl.stages.relabel import relabel as relabel_stage

    relabel = relabel_stage(  # made before the method exists
        config.load(preset="tiny", sets=RELABEL),
        data_uri=data_artifact.uri, base_uri=tiny_model_artifact.uri, out_uri=str(tmp_path / "relabel"),
    ).artifact  # fmt: skip
    args = ["--data", data_artifact.uri, "--base", tiny_model_artifact.uri, "--out", relabel.uri, "--preset", "tiny"]
    again = dorl_with_the_line("relabel", *args, *sets(*RELABEL))  # with the method: still complete, skipped
    assert again.returncode == 0 and "skipped" in again.stderr, again.stderr[-3000:]
    assert Artifact(relabel.uri).manifest["created"] == relabel.manifest["created"]

    model_uri = str(tmp_path / "reward_above")
    trained = dorl_with_the_line(
        "train", "--method", "reward_above", "--data", relabel.uri, "--base", tiny_model_artifact.uri,
        "--out", model_uri, "--preset", "tiny", *sets(*FAST[:4], "reward_above.threshold=0.5"),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    model = Artifact(model_uri)
    assert model.config["reward_above"] == {"threshold": 0.5}  # its settings are part of its identity
    cand = pd.read_parquet(relabel.path("candidates/train.parquet"))
    lines = pd.read_parquet(model.path("training_set/train.parquet"))
    assert sorted(lines["response"]) == sorted(cand.loc[cand["reward"] > 0.5, "candidate"]) and len(lines) > 0

    monkeypatch.setitem(methods.REGISTRY, "reward_above", ENTRY)
    cfg = config.load(preset="tiny", sets=[*FAST, "reward_above.threshold=0.5"])
    ev = evaluate(cfg, method="reward_above", model_uri=model_uri, data_uri=data_artifact.uri,
                  out_uri=str(tmp_path / "eval")).artifact  # fmt: skip
    assert ev.json("metrics.json")["method"] == "reward_above" and ev.info["n_examples"] == 4


def test_its_section_is_a_config_section_like_every_other(monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "reward_above", ENTRY)
    assert config.load().reward_above.threshold == 0.3
    assert config.load(sets=["reward_above.threshold=0.5"]).reward_above.threshold == 0.5
    with pytest.raises(ConfigError, match=r"'reward_above.threshold': 1.5 is out of range; allowed: \[0, 1\]"):
        config.load(sets=["reward_above.threshold=1.5"])
    # it joins no run unless listed: pipeline.methods defaults to the paper's methods and the control
    assert config.load().pipeline.methods == ["tf_human", "tf_all", "tf_top", "dt", "ilql"]
    assert config.load(sets=["pipeline.methods=[reward_above]"]).pipeline.methods == ["reward_above"]
    keys = [k for k, *_ in config.loader.describe(config.RunConfig)]
    assert "reward_above.threshold" in keys and keys.index("reward_above.threshold") < keys.index("relabel.splits")
    m = methods.get("reward_above", config.load(sets=["reward_above.threshold=0.5"]))
    assert m.config()["reward_above"] == {"threshold": 0.5} and m.train_config() is m.cfg.finetune
    # a relabel artifact's identity does not see it
    from dorl.stages.relabel import stage_config
    from dorl.store import digest

    assert digest(stage_config(config.load())) == IDENTITIES["relabel"]


# ---------------------------------------------------------------- the registry's facts
def test_every_place_reads_the_registry():
    """(The commands read it when their module is imported: here, before any test registers a method.)"""
    assert list(METHOD_ORDER) == methods.evaluated()
    for command, names in ((train_cmd, methods.names()), (evaluate_cmd, methods.evaluated())):
        choice = next(p for p in command.params if p.name == "method").type
        assert list(choice.choices) == names


def test_the_facts_agree_with_the_classes_and_the_config():
    cfg = config.load()
    assert methods.paper() == ["tf_all", "tf_top", "dt", "ilql"] == config.load(preset="paper").pipeline.methods
    assert methods.defaults() == ["tf_human", *methods.paper()] == cfg.pipeline.methods  # the control joins
    assert methods.scorers() == ["ilql_scorer"]
    for name, entry in methods.registry.entries().items():
        m = methods.get(name, cfg)
        assert (m.scores is not None) == entry.scorer, name
        if entry.section:  # the section is the one the run config has, of the declared class
            assert m.settings() is getattr(cfg, entry.section)
            assert type(m.settings()) is methods.registry.load(entry.settings)
        if not entry.scorer:  # its TrainConfig is at its config_section
            section = cfg
            for part in m.config_section.split("."):
                section = getattr(section, part)
            assert section is m.train_config()


# digest(config()) of each method at the defaults, as the code before the methods owned their settings made it
# (commit 487dcb1): a train artifact's identity, and a relabel artifact's (stage_config).
IDENTITIES = {
    "tf": "c819e487d7902e2bd116bf1a62ad24428cb1256e2152716e6cacac68f7eddc9c",
    "tf_all": "8e275c14d5329ad47e5c077bb79fc7ef56535b11acd0ec7f5b76ddf96742cce6",
    "tf_top": "76ed508c89dceaa3a24e4cb63c3cf76de52ea79aaf61bb39a321534f835a0148",
    "dt": "536fc41f717d0bb68b3b725a6b754e8ca6ac5a27107ffa5939a01861ac4a4ea5",
    # changed on purpose by issue 29 (ilql.polyak_alpha: auto, the beta chosen on validation, validation prompted as
    # evaluation prompts): an ILQL model trained before is refused without --force, as its defaults did no RL
    "ilql": "c6521282f92d08b3432f5e5cc2b939311a44ad39ef23223ba0b88cf8107fd37f",
    # the baselines, as they were added (issue 25)
    "kto": "4801a0b8302da9ce662c8cf45456903025607e71f611c73c866f3ae6b2c2e36c",
    "dpo": "0c16e818e456b772a1e298f3e419527dd69bdb3042d68e76dc5371948cb00792",
    "awr": "802bdcac100a26d91bb53523d2140d713bfa2208c35961f0525ecba686c82107",
    "relabel": "1f56c6636569e6396e3279f4944b9db8c8a2a8e7391de8b3b925fa4af2855d37",
}


def test_what_the_methods_and_relabel_record_is_what_they_recorded():
    """Artifacts made before still match: their identities are unchanged (and adding a method changes none)."""
    from dorl.stages.relabel import stage_config
    from dorl.store import digest

    cfg = config.load()
    got = {m: digest(methods.get(m, cfg).config()) for m in methods.names() if m in IDENTITIES}
    assert {**got, "relabel": digest(stage_config(cfg))} == IDENTITIES


def test_the_method_modules_are_light_to_import():
    """The config imports the settings' modules to assemble the run config: no torch, no transformers."""
    code = (
        "import sys; from dorl import config; config.load(); import dorl.methods.ilql_scorer, dorl.methods.tf_top, "
        "dorl.methods.tf_all, dorl.methods.kto, dorl.methods.dpo, dorl.methods.awr; "
        "print(sorted(m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_a_scorer_has_no_training_set_and_no_train_node():
    """ilql_scorer trains nothing: not a training method (no relabelled set, not in pipeline.methods, no
    `dorl train` choice); `pipeline.scorers` adds only its evaluation, after ilql and the candidates' model."""
    from dorl.stages.graph import nodes

    assert "ilql_scorer" in methods.evaluated() and "ilql_scorer" not in methods.names()
    assert methods.get("ilql_scorer", config.load()).training_set(None, 2) is None
    assert config.load().pipeline.scorers == []  # off by default: the default graph is unchanged
    cfg = config.load(sets=["pipeline.scorers=[ilql_scorer]", "eval.num_responses=2", "pipeline.methods=[dt, ilql]"])
    by_key = {n.key: n for n in nodes(cfg)}
    assert not any(k.endswith("train/ilql_scorer") for k in by_key)
    ev = by_key["abcd/evaluate/ilql_scorer"]
    assert ev.after == ("abcd/train/ilql", "abcd/train/dt")
    args = ev.args()
    assert args[args.index("--model") + 1] == by_key["abcd/train/ilql"].out
    assert args[args.index("--candidates-from") + 1] == by_key["abcd/train/dt"].out
    assert "abcd/evaluate/ilql_scorer" in by_key["report"].after
    bad = config.load(sets=["pipeline.scorers=[ilql_scorer]", "eval.num_responses=2", "pipeline.methods=[ilql]"])
    try:
        nodes(bad)
    except ConfigError as e:
        assert "dt" in str(e)
    else:
        raise AssertionError("a scorer without its candidates' method must be refused")
