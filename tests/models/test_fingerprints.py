"""Every family x shortcut x block x norm x init builds what it built at commit 68815a8.

The fingerprints (tests/models/model_fingerprints.py) were written by the models of 68815a8,
before the shared block protocol, the build-time variants (skipinit/rezero/fixup) and the LSTM
on ``nn.LSTM``. Equal state_dict hashes mean the same parameter names in the same order (old
checkpoints load, old optimizer states resume) and the same initial values at the same seed;
equal perturbed outputs mean the same layers in the same places; equal messages, the same
refusals.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.models.model_fingerprints import cases, fingerprint

REFERENCE = json.loads((Path(__file__).parent / "fingerprints_68815a8.json").read_text())
CASES = list(cases())


def test_the_reference_covers_every_case():
    assert sorted(REFERENCE["cases"]) == sorted(case for case, *_ in CASES)
    assert len(CASES) == 264


@pytest.mark.parametrize("case, cls, kwargs, shape", CASES, ids=[c[0] for c in CASES])
def test_model_is_what_it_was_at_68815a8(case, cls, kwargs, shape):
    want, got = REFERENCE["cases"][case], fingerprint(cls, kwargs, shape)
    assert got.keys() == want.keys()
    if "error" in want:
        assert got["error"] == want["error"]
        return
    assert got["state"] == want["state"]  # names, order, values: bit for bit
    # Bit for bit on the machine that wrote them; another CPU's kernels may round differently,
    # by float32 rounding of the output's own scale (an un-normalised net's logits reach ~20:
    # 6e-6 apart on an AVX-512 EPYC, 2026-12-04). A changed layer moves them by that scale.
    out_got, out_want = torch.tensor(got["out"]), torch.tensor(want["out"])
    scale = max(1.0, out_want.abs().max().item())
    torch.testing.assert_close(out_got, out_want, rtol=1e-5, atol=1e-6 * scale)
