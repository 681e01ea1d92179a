"""Notebook conventions: smoke mode, results files, and the "paper vs measured" table."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .io import _to_builtin, atomic_write_json

SMOKE_ENV = "INTERPKIT_SMOKE"
RESULTS_ENV = "INTERPKIT_RESULTS_DIR"
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def smoke_mode(smoke: bool | str | None = None) -> bool:
    """True when ``smoke`` is True, or it is None and the environment sets ``INTERPKIT_SMOKE=1``.

    Jupyter Book cannot inject papermill parameters, but the kernel inherits the environment,
    so one variable switches every notebook to its small, fast configuration. A string (the
    variable, or ``smoke`` given as text, e.g. by ``papermill -r``) is read as 1/true/yes/on or
    0/false/no/off/empty; anything else is a ``ValueError`` rather than a silent full run.
    """
    if smoke is not None and not isinstance(smoke, str):
        return bool(smoke)
    text, name = (smoke, "smoke") if isinstance(smoke, str) else (os.environ.get(SMOKE_ENV, "0"), SMOKE_ENV)
    value = text.strip().lower()
    if value not in _ON | _OFF:
        raise ValueError(f"{name}={text!r} is not a switch; use 1 (or true, yes, on) for the quick smoke "
                         "configuration, 0 (or false, no, off, empty) for the full one.")
    return value in _ON


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
    """Write a notebook's key numbers to ``<results_dir>/<stem>.json`` atomically; returns the path.

    A NaN or infinite number is refused (``ValueError`` naming its key): key numbers that did not
    come out are a defect to see, and JSON has no such numbers. Write ``None`` for "not applicable".
    """
    if not isinstance(stem, str) or not stem or Path(stem).name != stem or stem.endswith(".json"):
        raise ValueError(f"stem must be a plain file name without '.json', such as '03_input_resampling', "
                         f"got {stem!r}.")
    payload = dict(results)
    payload.setdefault("smoke", smoke_mode(smoke))
    plain = json.loads(json.dumps(payload, default=_to_builtin))  # NumPy and tensors as plain numbers
    bad = _non_finite(plain)
    if bad:
        raise ValueError(f"{stem}: results {', '.join(bad[:5])} are NaN or infinite; fix what computes them, "
                         "or store None where a number does not apply.")
    return atomic_write_json(results_dir() / f"{stem}.json", plain)


def _non_finite(obj: Any, where: str = "") -> list[str]:
    """The keys (``a.b[2]``) of the NaN and infinite numbers in a JSON-like object."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "(the value)"]
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in _non_finite(v, f"{where}.{key}" if where else str(key))]
    if isinstance(obj, list):
        return [k for i, v in enumerate(obj) for k in _non_finite(v, f"{where}[{i}]")]
    return []


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
    columns = ["claim", "paper", "measured", "holds"]
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i} must be a dict with keys {columns}, got {type(row).__name__}.")
        missing, unknown = [c for c in columns[:3] if c not in row], [k for k in row if k not in columns]
        if missing or unknown:  # pandas would show a missing cell as NaN and drop an unknown key
            what = " and ".join([f"lacks {missing}"] * bool(missing) + [f"has unknown keys {unknown}"] * bool(unknown))
            raise KeyError(f"row {i} {what}; each row has the keys {columns} (holds may be left out).")
        holds = row.get("holds")
        if not (holds is None or isinstance(holds, (bool, np.bool_))):
            raise TypeError(f"row {i}: holds must be True, False or None, got {holds!r}; "
                            "wrap a comparison in bool(...).")
    df = _ClaimsTable(rows, columns=columns)
    df["holds"] = [("yes" if r["holds"] else "no") if r.get("holds") is not None else "n/a" for r in rows]
    return df
