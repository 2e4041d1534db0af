"""TRL 1.16's trainers on the same tiny model and batch as dorl's preference methods: the losses dorl must equal.

A reference model (the tiny GPT-2 of tests/fixtures.py) and a policy that differs from it (its weights moved by
seeded noise), so the log-ratios, the KL term and β all matter; TRL's trainer built on them with its reference
model (`precompute_ref_log_probs=False`: TRL runs the reference itself), and its loss taken with its own
`compute_loss` on a batch its own data path made (tokenized, paired, collated by TRL).
"""

from __future__ import annotations

import copy

import torch

from dorl.text import REP_END


def models(model_dir, noise: float = 0.05, seed: int = 1):
    """(reference, policy): the tiny GPT-2 and a copy with noise added to every weight; dropout off, fp32."""
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    policy = copy.deepcopy(ref)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    for m in (ref, policy):
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    return ref.eval(), policy.eval()


def tokenizer(model_dir):
    """dorl's tokenizer with <_rep_end_> as its EOS for TRL, whose data path appends the EOS to a completion
    unless it ends with it: dorl's completions end with <_rep_end_>, so TRL tokenizes exactly what dorl does."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.eos_token = REP_END
    return tok


def args(cls, out, batch: int, **kw):
    """TRL's config for a CPU run in fp32, no gradient checkpointing, no truncation, no logging."""
    return cls(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        max_length=None,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to=[],
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        dataset_num_proc=None,
        **kw,
    )


def grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def loss_and_grads(model, fn) -> tuple[float, dict]:
    """fn() -> loss; its value and the gradient of every parameter of `model`."""
    model.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    out = float(loss.detach()), grads(model)
    model.zero_grad(set_to_none=True)
    return out


def assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and got
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)
