"""ilql, the specification of its training set and evaluation settings (the model, loss, heads and
decoding: tests/ilql/).

- Training set: every candidate as prompt (context + <_rep_start_>), response (candidate + <_rep_end_>),
  its reward and its return.
- Config section `ilql` (`ilql.train` for the optimisation); evaluation decodes with ilql.beta, top_k
  and temperature, which the evaluation records.
"""

from dorl import config, methods
from tests.methods.helpers import CTX, candidates


def test_training_set():
    m = methods.get("ilql", config.load())
    ilql = m.training_set(candidates([1, 1, 0]), return_bins=2)
    assert list(ilql.columns) == ["prompt", "response", "reward", "return", "candidate_index"]
    rows = ilql.set_index("response")
    assert rows.loc["jeans<_rep_end_>", "prompt"] == CTX + "<_rep_start_>"
    assert rows.loc["jeans<_rep_end_>", "reward"] == 0.7 and rows.loc["<_rep_end_>", "return"] == 0


def test_config_and_decoding():
    m = methods.get("ilql", config.load(sets=["ilql.beta=2.0", "ilql.train.lr=0.5"]))
    assert m.train_config().lr == 0.5 and m.config_section == "ilql.train"
    assert m.decoding() == {"beta": 2.0, "top_k": 20, "temperature": 1.0}


def test_greedy_decoding_is_trlx_at_zero_temperature():
    """Greedy = argmax of log_softmax(LM) + beta * advantage, whatever ilql.temperature (trlx's
    softmax((log_softmax(LM) + beta * adv) / T) as T -> 0). Scaling the LM by 1/T first, as dorl did,
    let a low temperature cancel beta: here it kept the LM's argmax (token 0)."""
    import torch

    from dorl.generate import DecodeConfig, _choose

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    adv = torch.tensor([[0.0, 5.0, 0.0]])
    want = (torch.log_softmax(logits, -1) + 1.0 * adv).argmax(-1)
    assert want.tolist() == [1]

    class Advantage:  # ILQL's adjustment (dorl.ilql.decode.Advantage) with these advantages and beta = 1
        wants_hidden = False

        def __call__(self, logp, hidden):
            return logp + 1.0 * adv

    rows = torch.arange(1)
    for t in (1e-3, 0.5, 1.0, 4.0):
        assert _choose(logits, None, DecodeConfig(temperature=t, top_k=0), Advantage(), None, rows, 1).tolist() == [1]
    assert _choose(logits, None, DecodeConfig(temperature=1e-3), None, None, rows, 1).tolist() == [0]
