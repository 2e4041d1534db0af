"""`dorl.ilql.ranking`: V at a response's last state (the reference's `ilql_scorer`), the order it gives,
the value-ranking validation metric, and the ILQL loss module's per-row validation values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dorl.generate import stop_token_ids
from dorl.ilql.model import ILQLModel
from dorl.ilql.ranking import last_state_values, order_by_value, score_texts, value_ranking
from dorl.text import REP_END
from tests.ilql.conftest import randomise_heads


class TokenValueModel(nn.Module):
    """A model whose V at a state is `table[the state's last token]`: the hidden state is the token's
    one-hot, V reads the table. So the answer of every valuation is known."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)

    @property
    def heads(self):
        return self

    def hidden(self, ids, mask, positions):
        return nn.functional.one_hot(ids, len(self.table)).float(), None

    def v(self, h):
        return h @ self.table

    position_ids = staticmethod(ILQLModel.position_ids)


def test_values_are_v_at_the_state_after_the_text_and_order_follows_them():
    table = torch.arange(10, dtype=torch.float32)  # V = the last text token's id
    model = TokenValueModel(table)
    prompts = [[1, 2], [1, 2], [1, 2, 3]]
    responses = [[4, 7], [9, 5], []]  # last states: token 7, token 5, the prompt's end (3)
    values = last_state_values(model, prompts, responses, stop_ids=[0], pad_id=0)
    assert values == [7.0, 5.0, 3.0]
    assert order_by_value(values) == [0, 1, 2]
    assert order_by_value([1.0, 3.0, 3.0, 2.0]) == [1, 2, 3, 0]  # ties keep their order


def test_a_candidate_that_stopped_at_eos_is_valued_where_rep_end_would_be_the_action():
    """[a, b, EOS] and [a, b, <_rep_end_>] are both valued at the state after b (V = table[b]), never at
    the EOS (table[EOS] = 100 here: the value of a state nothing trains)."""
    eos, rep_end = 8, 9
    table = torch.zeros(10)
    table[5], table[eos], table[rep_end] = 2.0, 100.0, -100.0
    model = TokenValueModel(table)
    prompts = [[1], [1], [1]]
    values = last_state_values(model, prompts, [[4, 5, eos], [4, 5, rep_end], [4, 5]], [rep_end, eos], pad_id=0)
    assert values == [2.0, 2.0, 2.0]


def test_batched_left_padded_values_equal_one_unpadded_forward_each(tok, lm):
    """The real model: V(s_T) of every candidate in one padded batch equals heads.v of the last hidden
    state of its own forward; the EOS-stopped one equals its text's."""
    model = randomise_heads(ILQLModel(lm)).eval()
    prompts = ["<_soc_><_cus_start_>hi there<_cus_end_><_rep_start_>", "<_soc_><_rep_start_>"]
    texts = ["hello how can i help you today", "ok"]
    got = score_texts(model, tok, prompts, texts, prompt_tokens=96, batch_size=2)
    for p, t, v in zip(prompts, texts, got, strict=True):
        ids = torch.tensor([tok(p + t, add_special_tokens=False)["input_ids"]])
        h, _ = model.hidden(ids)
        assert v == pytest.approx(model.heads.v(h[:, -1]).item(), abs=1e-5)
    stop = stop_token_ids(tok)
    text_ids = tok(texts[0], add_special_tokens=False)["input_ids"]
    p_ids = tok(prompts[0], add_special_tokens=False)["input_ids"]
    with_eos = last_state_values(model, [p_ids], [text_ids + [tok.eos_token_id]], stop, tok.pad_token_id)
    assert with_eos[0] == pytest.approx(got[0], abs=1e-5)


def test_value_ranking_on_a_constructed_case():
    groups = ["a", "a", "a", "b", "b", "c", "c"]
    returns = [1, 0, 0, 1, 0, 1, 1]  # c: one return only, not counted
    values = [0.9, 0.1, 0.5, 0.2, 0.3, 0.0, 5.0]  # a: top first (2/2 pairs); b: wrong (0/1)
    out = value_ranking(values, groups, returns)
    assert out == {"value_ranking": 0.5, "value_pairs": pytest.approx(2 / 3), "value_contexts": 2}
    tied = value_ranking([1.0, 1.0], ["a", "a"], [1, 0])  # a tie does not rank the top response above
    assert tied["value_ranking"] == 0.0
    assert value_ranking([1.0], ["a"], [1])["value_ranking"] is None


def test_the_loss_module_keeps_v_at_each_rows_last_action_state_in_evaluation(tok, lm):
    from dorl.ilql.data import Collator, Sample
    from dorl.ilql.loss import ILQLLoss, LossConfig

    model = randomise_heads(ILQLModel(lm))
    rep_end = tok.convert_tokens_to_ids(REP_END)
    rows = [Sample([5, 6, 7, 8, rep_end], 3, 1.0), Sample([5, 9, rep_end], 2, 0.0)]
    batch = Collator(tok.pad_token_id)(rows)
    loss = ILQLLoss(model, LossConfig()).eval()
    loss(**batch)
    for b, s in enumerate(rows):
        h, _ = model.hidden(torch.tensor([s.input_ids]))
        assert loss.last_values[b].item() == pytest.approx(model.heads.v(h[:, -2]).item(), abs=1e-5)


def test_ilql_own_rerank_values_an_eos_stopped_sample_by_q_of_rep_end(tok, lm, monkeypatch):
    """dorl's own re-ranking of sampled responses (min target-Q of the last action): a sample that
    stopped at <|endoftext|> gets Q(s, <_rep_end_>), not Q(s, EOS), which nothing trains."""
    from dorl.ilql import decode as dec

    model = randomise_heads(ILQLModel(lm)).eval()
    rep_end, eos = tok.convert_tokens_to_ids(REP_END), tok.eos_token_id
    text = tok("hello there", add_special_tokens=False)["input_ids"]
    samples = dec.Samples([text + [eos], text + [rep_end]], [True, True], ["hello there"] * 2)
    monkeypatch.setattr(dec, "decode", lambda *a, **k: samples)
    p = "<_soc_><_rep_start_>"
    ranked = dec.ilql_scorer(model, tok, [p], num_candidates=2)[0]
    p_ids = tok(p, add_special_tokens=False)["input_ids"]
    want = dec.response_values(model, [p_ids], [text + [rep_end]], tok.pad_token_id)[0]
    wrong = dec.response_values(model, [p_ids], [text + [eos]], tok.pad_token_id)[0]
    assert want != pytest.approx(wrong)
    assert [c.value for c in ranked] == pytest.approx([want, want])
