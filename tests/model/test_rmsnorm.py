"""RMSNorm's hand-written gradient against autograd through PyTorch's own rms_norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenloom.model.transformer import RMSNorm, _RMSNormFunction


def test_gradient_passes_gradcheck_in_float64():
    x = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: _RMSNormFunction.apply(x, w, 1e-5), (x, w))


def test_forward_and_gradients_equal_pytorch_rms_norm():
    x0, w0, upstream = torch.randn(12, 64, 128), torch.randn(128), torch.randn(12, 64, 128)
    grads = []
    for use_ours in (True, False):
        x, norm = x0.clone().requires_grad_(), RMSNorm(128, 1e-5)
        with torch.no_grad():
            norm.weight.copy_(w0)
        y = norm(x) if use_ours else F.rms_norm(x, (128,), norm.weight, 1e-5)
        y.backward(upstream)
        grads.append((y.detach(), x.grad, norm.weight.grad))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_bfloat16_input_is_normalised_in_float32():
    x = torch.randn(4, 32).bfloat16().requires_grad_()
    w = torch.ones(32, requires_grad=True)
    y = _RMSNormFunction.apply(x, w, 1e-5)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
