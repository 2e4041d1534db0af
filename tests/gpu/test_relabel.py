"""`dorl relabel` on the GPU gives the CPU's candidates (fp32 on both: the stage loads the model as saved) and their
rewards (BERTScore on the GPU).

The tie rule: a context's candidates may differ between the devices only where they are equally good. Both lists
are scored on the CPU in float64 (each candidate's mean log-probability of its tokens and <_rep_end_> given the
prompt: the beam's length-normalised score); they are a tie when the sorted scores agree within TIE nats per
token, i.e. the devices' fp32 rounding (about 1e-6) chose between near-equal beams. Any other difference fails,
and ties may be at most a tenth of the contexts (else the test would say little)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from dorl import config
from dorl.stages.relabel import relabel
from tests.gpu.conftest import DEVICE

pytestmark = pytest.mark.gpu
TIE = 1e-3


def candidate_lists(art, split: str = "validation") -> dict[tuple, list]:
    t = pd.read_parquet(art.path(f"candidates/{split}.parquet"))
    t = t[t["candidate_index"] > 0].sort_values(["dialogue_id", "turn_index", "candidate_index"])
    return {k: (g["context"].iloc[0], g["candidate"].tolist(), g["reward"].tolist())
            for k, g in t.groupby(["dialogue_id", "turn_index"], sort=True)}  # fmt: skip


@torch.no_grad()
def scores(lm, tok, context: str, texts: list[str], prompt_tokens: int) -> list[float]:
    """Mean float64 log-probability of each text's tokens and <_rep_end_> after the context's prompt."""
    from dorl.generate import encode_prompts
    from dorl.text import REP_END, prompt

    p = encode_prompts(tok, [prompt(context)], prompt_tokens)[0]
    end = tok.convert_tokens_to_ids(REP_END)
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"] + [end]
        x = torch.tensor([p + ids])
        logp = torch.log_softmax(lm(input_ids=x).logits[0, len(p) - 1 : -1].double(), -1)
        out.append(float(logp[torch.arange(len(ids)), torch.tensor(ids)].mean()))
    return out


def test_relabel_on_the_gpu_equals_the_cpu(tmp_path, gpu_data, gpu_base, metric_sets, record_property):
    from dorl import readers

    sets = [*metric_sets, "relabel.splits=[validation]", "relabel.chunk_size=64"]
    runs = {}
    for name, device in (("gpu", DEVICE), ("cpu", "cpu")):
        cfg = config.load(preset="tiny", sets=[*sets, f"relabel.device={device}", f"metrics.device={device}"])
        runs[name] = relabel(cfg, data_uri=gpu_data.uri, base_uri=gpu_base.uri, out_uri=str(tmp_path / name))
    gpu, cpu = (candidate_lists(runs[d].artifact) for d in ("gpu", "cpu"))
    assert gpu.keys() == cpu.keys() and len(cpu) > 50

    lm = readers.causal_lm(gpu_base.local_dir(), dtype=torch.float64).eval()
    tok = readers.tokenizer(gpu_base.local_dir())
    prompt_tokens = config.load(preset="tiny").relabel.prompt_tokens
    same, ties, rewards = 0, [], []
    for key, (context, cands, reward) in cpu.items():
        g_cands, g_reward = gpu[key][1], gpu[key][2]
        if g_cands == cands:
            same += 1
            rewards += [abs(a - b) for a, b in zip(reward, g_reward, strict=True)]
            continue
        a = sorted(scores(lm, tok, context, cands, prompt_tokens))
        b = sorted(scores(lm, tok, context, g_cands, prompt_tokens))
        gap = max(abs(x - y) for x, y in zip(a, b, strict=True))
        assert gap <= TIE, f"{key}: the GPU's candidates {g_cands} are not a tie of the CPU's {cands} (gap {gap:.2e})"
        ties.append(key)
    record_property("contexts", len(cpu))
    record_property("identical", same)
    record_property("ties", len(ties))
    record_property("max_reward_difference", max(rewards))
    assert len(ties) <= 0.1 * len(cpu), f"{len(ties)} ties of {len(cpu)} contexts"
    assert max(rewards) < 1e-3  # BERTScore on the GPU, fp32: the CPU's to rounding
