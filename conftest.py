"""Root pytest configuration: notebooks collected by nbval run in smoke mode with a repo-local
cache."""

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent
os.environ.setdefault("INTERPKIT_SMOKE", "1")
os.environ.setdefault("INTERPKIT_CACHE", str(_ROOT / ".cache" / "interpkit-test"))
os.environ.setdefault("INTERPKIT_RESULTS_DIR", str(_ROOT / ".cache" / "results-nbval"))
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebook)
    # the browser test builds the book from the notebooks that tests/test_notebooks.py executed
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
