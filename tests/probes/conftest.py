"""Fixtures of the probe tests (helpers in probe_helpers.py)."""

from __future__ import annotations

import pytest
import torch
from probe_helpers import FakeData


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets: one intra-op thread is 10x faster than two on a busy 2-core machine
    (thread hand-offs dominate); restored after each test so other tests keep theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data() -> FakeData:
    return FakeData()
