"""Notebook conventions: smoke mode, results files, and the "paper vs measured" table."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .io import atomic_write_json

SMOKE_ENV = "INTERPKIT_SMOKE"
RESULTS_ENV = "INTERPKIT_RESULTS_DIR"


def smoke_mode(smoke: bool | None = None) -> bool:
    """True when ``smoke`` is True, or it is None and the environment sets ``INTERPKIT_SMOKE=1``.

    Jupyter Book cannot inject papermill parameters, but the kernel inherits the environment,
    so one variable switches every notebook to its small, fast configuration.
    """
    if smoke is not None:
        return bool(smoke)
    return os.environ.get(SMOKE_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def results_dir() -> Path:
    """``$INTERPKIT_RESULTS_DIR`` or ``results/`` next to the repository root (cwd otherwise)."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    here = Path.cwd()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "interpkit").is_dir():
            return p / "results"
    return here / "results"


def save_results(stem: str, results: Mapping[str, Any], smoke: bool | None = None) -> Path:
    """Write a notebook's key numbers to ``<results_dir>/<stem>.json`` atomically; returns the path."""
    payload = dict(results)
    payload.setdefault("smoke", smoke_mode(smoke))
    return atomic_write_json(results_dir() / f"{stem}.json", payload)


class _ClaimsTable(pd.DataFrame):
    """A DataFrame that displays every cell in full (claims and measured values are long strings,
    which pandas would otherwise cut at 50 characters in the notebook and the rendered book)."""

    @property
    def _constructor(self):
        return _ClaimsTable

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", None):
            return super()._repr_html_()

    def __repr__(self) -> str:
        return self.to_string()


def paper_vs_measured(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A table of claims: each row has ``claim``, ``paper``, ``measured`` and ``holds`` (bool or None).

    Shown in full (no truncated cells) when it is the last expression of a notebook cell.
    """
    df = _ClaimsTable(list(rows), columns=["claim", "paper", "measured", "holds"])
    df["holds"] = df["holds"].map(lambda v: "yes" if v is True else ("no" if v is False else "n/a"))
    return df
