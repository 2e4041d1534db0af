"""The vocabulary projection of decoding through oneDNN on a CPU: the same fp32 matmul, faster.

    with onednn.lm_head(model):   # inside: model(...) computes its logits with oneDNN
        ...

On a CPU, torch runs an fp32 `nn.Linear` through MKL's sgemm, which on the 2-core AMD EPYC
(AVX-512) of this project takes 57 ms for 160 rows x 256 -> 50,272 (5 beams x 32 contexts, the
relabel batch); oneDNN's matmul with the weight packed once takes 26 ms, and 4 ms instead of 12 ms
for 5 rows (measured with 2 threads). The projection is half of generation's time, so this is
the largest single saving left in relabelling on a CPU. The results are those of the same fp32
matmul summed in another order: they equal torch's to fp32 rounding (~1e-6 relative), not bit
for bit, so a beam choice between two continuations whose scores differ by less than that can
fall the other way (`relabel.lm_head=torch` keeps torch's matmul: bit-identical to `generate`).

Used only where it applies: a CPU, an fp32 `nn.Linear` output layer, no autograd, and a oneDNN
build of torch whose `mkldnn._linear_pointwise` (the op torch's compiler uses for packed CPU
linears) gives the plain matmul's result on a probe; anywhere else the model is left as it is.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

KERNELS = ("auto", "torch")


class PackedLinear(nn.Module):
    """`linear`'s forward with its weight packed for oneDNN once."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.inner = [linear]  # a list: not a submodule, so the model's state dict is unchanged
        self.packed = linear.weight.detach().to_mkldnn()
        self.bias = None if linear.bias is None else linear.bias.detach()

    @property
    def weight(self) -> torch.Tensor:  # for code that reads the output layer's weight inside the block
        return self.inner[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:  # e.g. under CPU autocast: the plain layer
            return self.inner[0](x)
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], out.shape[-1])


@functools.cache
def _op_works() -> bool:
    """A probe (fixed inputs, no random state touched): the op exists in this build and computes the matmul."""
    try:
        probe = nn.Linear(8, 16).requires_grad_(False)
        with torch.no_grad():
            probe.weight.copy_(torch.arange(128.0).view(16, 8).sin())
            probe.bias.copy_(torch.arange(16.0).cos())
        x = torch.arange(24.0).view(3, 8).cos()
        return torch.allclose(PackedLinear(probe)(x), probe(x), rtol=1e-5, atol=1e-6)
    except (RuntimeError, AttributeError):
        return False


def _usable(head) -> bool:
    if not isinstance(head, nn.Linear) or head.weight.device.type != "cpu" or head.weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() or not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return _op_works()


@contextlib.contextmanager
def lm_head(model, kernel: str = "auto"):
    """Within the block, `model`'s output layer runs through oneDNN where that applies (kernel 'auto');
    kernel 'torch' leaves it alone. The model is restored on exit. The swap changes the model object:
    no other thread should train or read the same model meanwhile."""
    head = model.get_output_embeddings()
    if kernel != "auto" or not _usable(head):
        yield model
        return
    model.set_output_embeddings(PackedLinear(head))
    try:
        yield model
    finally:
        model.set_output_embeddings(head)
