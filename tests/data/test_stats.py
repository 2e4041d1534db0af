"""Token-length statistics: special tokens separate words, percentiles as numpy's linear interpolation."""

from dorl.data.stats import describe, whitespace_lengths


def test_whitespace_lengths_split_on_special_tokens():
    texts = ["<_soc_><_cus_start_>hi there<_cus_end_><_rep_start_>Hello!<_rep_end_>", "one", ""]
    assert whitespace_lengths(texts) == [3, 1, 0]


def test_describe():
    assert describe([1, 2, 3, 4]) == {"p50": 2, "p90": 3, "p99": 3, "max": 4, "mean": 2.5}  # 2.5, 3.7, 3.97 floored
    assert describe([]) == {"p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0.0}


def test_gpt2_token_counts():
    from dorl.data.stats import tokenizer_lengths

    # GPT-2 BPE: "Hello world" -> [15496, 995]; each special token is one token
    assert tokenizer_lengths("gpt2")(["Hello world", "<_soc_><_cus_start_>Hello world<_cus_end_>"]) == [2, 5]
