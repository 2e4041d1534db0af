"""ILQL does RL at its defaults (the audit's findings, each a test):

- the target heads move within the run: the Polyak rate is scaled to the run's steps (`ilql.polyak_alpha: auto`),
  trlx's 0.001 every 5 steps still selectable;
- evaluation decodes with a beta > 0 chosen on validation (`ilql.beta: auto`), recorded in the model's manifest;
- the value ranking leaves the human response out and values responses after prompts cut as the scorer cuts them;
- `ilql_scorer` with one response is refused in one line.
"""

from __future__ import annotations

import pandas as pd
import pytest

from dorl import config, methods
from dorl.errors import ConfigError
from dorl.generate import DecodeConfig
from dorl.ilql.beta import sample_contexts, sweep
from dorl.ilql.model import ILQLModel
from dorl.ilql.polyak import auto_alpha, schedule
from dorl.text import REP_END, prompt
from tests.ilql.conftest import randomise_heads


# ---------------------------------------------------------------- the target heads
def test_the_default_schedule_moves_the_targets_in_the_demos_run():
    """The demo's ILQL ran 1,008 steps: at trlx's alpha 0.001 every 5 the targets kept 82% of their random initial
    weights. The default is scaled to the run: the targets move whatever its length."""
    cfg = config.load(preset="demo")
    old = schedule(1008, 0.001, 5)
    assert old["too_short"] and 1 - old["target_weight"] == pytest.approx(0.818, abs=1e-3)
    for steps in (93, 1008, 100_000):
        new = schedule(steps, cfg.ilql.polyak_alpha, cfg.ilql.polyak_every)
        assert new["setting"] == "auto" and not new["too_short"] and new["target_weight"] > 0.99
    assert auto_alpha(100_000, 5) == pytest.approx(0.001)  # trlx's rate at 100,000 steps
    assert schedule(1008, 0.001, 5)["alpha"] == 0.001  # a number is used as given
    assert config.load(sets=["ilql.polyak_alpha=0.001"]).ilql.polyak_alpha == 0.001


# ---------------------------------------------------------------- beta chosen on validation
class _ByLength:
    """A metric that prefers longer responses (any deterministic preference will do)."""

    name = "by_length"

    def score(self, predictions, references):
        return [len(p) / 100 for p in predictions]


def test_the_sweep_chooses_the_best_positive_beta_and_compares_it_with_beta_0(tok, lm):
    model = randomise_heads(ILQLModel(lm), scale=1.0).eval()
    prompts = [prompt(f"<_soc_><_cus_start_>my order {i} is late<_cus_end_>") for i in range(6)]
    dc = DecodeConfig(prompt_tokens=64, max_new_tokens=8, batch_size=4)
    out = sweep(model, tok, prompts, ["x"] * 6, [0.5, 4.0, 2.0], dc, _ByLength())
    grid = out["grid"]
    assert [r["beta"] for r in grid] == [0.0, 0.5, 2.0, 4.0] and grid[0]["changed"] == 0.0
    positive = [r for r in grid if r["beta"] > 0]
    assert out["beta"] == max(positive, key=lambda r: r["reward"])["beta"] > 0
    assert out["beats_beta_0"] == (max(r["reward"] for r in positive) > grid[0]["reward"])
    assert any(r["changed"] > 0 for r in positive)  # beta changes what is said
    assert out["contexts"] == 6 and out["metric"] == "by_length"


def test_sample_contexts_takes_each_human_response_once():
    val = pd.DataFrame(
        {
            "prompt": ["a", "a", "b", "b", "c"],
            "response": ["ha" + REP_END, "x" + REP_END, "hb" + REP_END, "y" + REP_END, "hc" + REP_END],
            "candidate_index": [0, 1, 0, 1, 0],
        }
    )
    assert sample_contexts(val, 10) == (["a", "b", "c"], ["ha", "hb", "hc"])
    prompts, refs = sample_contexts(val, 2)
    assert len(prompts) == 2 and all(r == "h" + p for p, r in zip(prompts, refs, strict=True))


def test_training_records_the_chosen_beta_and_evaluation_decodes_with_it(trained):
    record = trained.info["beta"]
    assert record["contexts"] == 9 and record["metric"] == "bertscore"  # 48 validation samples: 9 distinct contexts
    assert [r["beta"] for r in record["grid"]] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert record["beta"] in (0.5, 1.0, 2.0, 4.0)
    m = methods.get("ilql", config.load(preset="tiny"))
    assert m.decoding(trained.info)["beta"] == record["beta"] > 0  # the default evaluation uses the chosen beta
    assert methods.get("ilql", config.load(sets=["ilql.beta=0"])).decoding(trained.info)["beta"] == 0.0
    assert m.decoding({})["beta"] == 0.0  # a model trained before: the reference's evaluation, with a warning


# ---------------------------------------------------------------- the value ranking
class _Dist:
    @staticmethod
    def all_sum(values):
        return values


def _method_with_validation(val: pd.DataFrame, *sets: str):
    m = methods.get("ilql", config.load(sets=list(sets)))
    m._info = {"validation": {}}
    m._ranking_set(val, "return")
    return m


def test_the_value_ranking_leaves_the_human_response_out():
    """The human response always has the top return; counted, it lets V rank 'right' by valuing human text above
    model text, which decoding never chooses between (the audit: 0.667 with it, 0.574 without)."""
    val = pd.DataFrame(
        {
            "prompt": ["a"] * 3 + ["b"] * 3,
            "response": ["h", "x", "y", "h", "x", "y"],
            "return": [1, 1, 0, 1, 0, 0],
            "candidate_index": [0, 1, 2, 0, 1, 2],
        }
    )
    m = _method_with_validation(val)
    m._val_values[:] = [9.0, 1.0, 2.0, 9.0, 1.0, 2.0]  # the human response valued highest in both contexts
    # a: the top-return model candidate (V 1) below the other (V 2): a miss; b: its candidates share one return
    assert m.validation_metrics(_Dist()) == {"value_ranking": 0.0, "value_pairs": 0.0, "value_contexts": 1}
    assert m._info["validation"]["ranked_contexts"] == 1


def test_validation_samples_are_prompted_as_evaluation_prompts(tok):
    """Training lines keep up to ilql.train.max_length tokens; a validation sample keeps the prompt's last
    eval.prompt_tokens tokens, as the decoder and the scorer do, so V is judged where it is used."""
    long = prompt("<_soc_><_cus_start_>" + " ".join(f"word{i}" for i in range(150)) + "<_cus_end_>")
    rows = pd.DataFrame(
        {"prompt": [long] * 2, "response": ["yes" + REP_END, "no" + REP_END], "reward": [1.0, 0.0],
         "return": [1, 0], "candidate_index": [0, 1]}
    )  # fmt: skip
    m = methods.get("ilql", config.load(preset="tiny", sets=["eval.prompt_tokens=16", "ilql.train.max_length=256"]))
    m.bind(tok)
    train, val = m.datasets(None, tok, {"train": rows, "validation": rows})
    n_prompt = len(tok(long, add_special_tokens=False)["input_ids"])
    assert n_prompt > 16
    response = len(tok("yes" + REP_END, add_special_tokens=False)["input_ids"])
    assert int(train.lengths[0]) == min(256, n_prompt + response)
    assert int(val.lengths[0]) == 16 + response
    assert m.config()["validation"]["prompt_tokens"] == 16


# ---------------------------------------------------------------- ilql_scorer needs candidates
def test_ilql_scorer_with_one_response_is_refused():
    with pytest.raises(ConfigError, match="eval.num_responses >= 2"):
        config.load(sets=["pipeline.scorers=[ilql_scorer]"])
    assert config.load(sets=["pipeline.scorers=[ilql_scorer]", "eval.num_responses=2"]).pipeline.scorers


def test_dorl_evaluate_ilql_scorer_with_one_response_is_one_line_exit_2(tmp_path):
    from tests.conftest import run_dorl

    r = run_dorl("evaluate", "--method", "ilql_scorer", "--model", str(tmp_path / "m"), "--candidates-from",
                 str(tmp_path / "c"), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--method ilql_scorer re-ranks eval.num_responses candidates" in r.stderr  # refused before any input is read
    assert list(tmp_path.iterdir()) == []
