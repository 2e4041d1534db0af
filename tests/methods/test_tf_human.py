"""tf_human, the specification: the same-recipe control. Fine-tune the base model on the human responses alone.

- Training set: candidate 0 of every context (the human response), as plain lines
  context + <_rep_start_> + response + <_rep_end_>; no model candidate, whatever its return.
- The recipe of the line methods (the `finetune` section, keep-best by validation loss), and as many optimizer steps
  as tf_top trains on the same relabel artifact (finetune.epochs over tf_top's lines), recorded as its max_steps;
  an explicit finetune.max_steps wins.
- In the default pipeline.methods (a registry fact, `control`), not in the paper preset's; evaluated like tf.
"""

from dorl import config, methods
from dorl.engine.data import steps_per_epoch
from dorl.methods.training_set import read_candidates
from dorl.text import prompt
from tests.fixtures import make_relabel_artifact
from tests.methods.helpers import CTX, candidates, train_and_evaluate


def test_training_set_is_the_human_responses_alone():
    m = methods.get("tf_human", config.load())
    rows = m.training_set(candidates([1, 1, 0]), return_bins=2)  # candidate 1 is in the top bin: not taken
    assert rows["text"].tolist() == [CTX + "<_rep_start_>I can help with your jeans.<_rep_end_>"]
    assert list(rows.columns) == ["text", "context", "response", "return"]
    assert m.prompt(CTX, {}) == prompt(CTX) and m.config_section == "finetune"


def test_a_control_joins_the_default_run_not_the_paper_preset():
    assert methods.entry("tf_human").control and not methods.entry("tf_human").paper
    assert "tf_human" in config.load().pipeline.methods
    assert "tf_human" not in config.load(preset="paper").pipeline.methods
    assert config.load(preset="demo").report.control == "tf_human"


def test_it_trains_as_many_steps_as_tf_top(tmp_path, data_artifact, tiny_model_artifact):
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    cfg = config.load(preset="tiny", sets=["finetune.batch_size=8", "finetune.micro_batch_size=8"])
    train = read_candidates(relabel, "train", 2)
    top_lines = int((train["return"] == 1).sum())
    human_lines = int((train["candidate_index"] == 0).sum())
    assert top_lines > human_lines  # the fixture's top bin holds model candidates too
    m = methods.get("tf_human", cfg)
    m.check_inputs(relabel, tiny_model_artifact)
    steps = cfg.finetune.epochs * steps_per_epoch(top_lines, 8)
    assert m.train_config().max_steps == steps and m.config()["train"]["max_steps"] == steps
    assert methods.get("tf_top", cfg).train_config().max_steps is None  # tf_top's own steps: its epochs
    fixed = methods.get("tf_human", config.load(preset="tiny", sets=["finetune.max_steps=3"]))
    fixed.check_inputs(relabel, tiny_model_artifact)
    assert fixed.train_config().max_steps == 3


def test_train_and_evaluate(tmp_path, data_artifact, tiny_model_artifact):
    relabel = make_relabel_artifact(str(tmp_path / "relabel"), data_artifact)
    model, ev = train_and_evaluate(tmp_path, "tf_human", relabel, tiny_model_artifact, data_artifact)
    rows = model.info["training_set"]
    assert rows["train"] == int((read_candidates(relabel, "train", 2)["candidate_index"] == 0).sum())
    assert ev.info["method"] == "tf_human"
