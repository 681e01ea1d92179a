"""Shared fixtures. Notebook kernels inherit this process's environment: smoke mode and a test cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of many tiny tensor ops (use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``): no OpenMP hand-offs or spin-waits,
    which dominate their run time on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty model cache for one test."""
    d = tmp_path / "cache"
    monkeypatch.setenv("INTERPKIT_CACHE", str(d))
    return d


@pytest.fixture
def tiny_images():
    """A small deterministic grey image set (two easy classes)."""
    from interpkit.data import ImageSet

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 32, 32, generator=g) * 0.2
    y = torch.arange(64) % 2
    x[y == 1, :, 8:24, 8:24] += 0.7
    return ImageSet(x.clamp(0, 1), y, ["dark", "square"], "tiny")


@pytest.fixture
def pretend_mac(monkeypatch):
    """This machine as a Mac without CUDA: MPS reported available (nothing is run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
