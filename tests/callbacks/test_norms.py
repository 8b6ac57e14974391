"""l2_norm: float64-accurate on every path it takes (chunked float32, float64 fallback)."""

import numpy as np
import pytest
import torch

from residual_lab.callbacks.norms import CHUNK, SMALL, l2_norm


def reference(x: torch.Tensor) -> float:
    return float(np.linalg.norm(x.detach().to(torch.float64).numpy().ravel()))


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3, 1e-30, 1e30])
@pytest.mark.parametrize("shape", [(64, 16, 32, 32), (3, 5, 7, 11), (CHUNK * 20 + 17,)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_l2_norm_matches_a_float64_reference(shape, scale, channels_last):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) + 0.3) * scale
    if channels_last:
        if x.dim() != 4:
            pytest.skip("channels_last needs 4 dims")
        x = x.contiguous(memory_format=torch.channels_last)
    out = l2_norm(x)
    assert out.dtype == torch.float64 and out.dim() == 0
    ref = reference(x)
    assert abs(out.item() - ref) / ref < 1e-7  # a single float32 vector_norm is off by ~3e-5 here


def test_l2_norm_takes_the_float32_path_on_large_cpu_tensors_and_is_exact_for_known_values():
    x = torch.full((SMALL * 4,), 3.0)  # ||x|| = 3 sqrt(n)
    assert l2_norm(x).item() == pytest.approx(3.0 * (SMALL * 4) ** 0.5, rel=1e-12)


def test_l2_norm_of_bf16_activations_and_of_zeros_and_non_contiguous_views():
    x = torch.randn(32, 16, 32, 32).bfloat16()
    assert abs(l2_norm(x).item() - reference(x)) / reference(x) < 1e-7
    assert l2_norm(torch.zeros(SMALL * 2)).item() == 0.0
    y = torch.randn(64, 64, 64)[:, ::2]  # neither NCHW- nor channels_last-contiguous
    assert abs(l2_norm(y).item() - reference(y)) / reference(y) < 1e-7


def test_l2_norm_keeps_inf_and_nan():
    x = torch.ones(SMALL * 2)
    x[5] = float("inf")
    assert l2_norm(x).item() == float("inf")
    x[5] = float("nan")
    assert np.isnan(l2_norm(x).item())
