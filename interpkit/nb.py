"""Notebook conventions: smoke mode, results files, and the "paper vs measured" table."""

from __future__ import annotations

import json
import math
import os
import string
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checks import check_positive_int
from .io import _to_builtin, atomic_write_json

SMOKE_ENV = "INTERPKIT_SMOKE"
RESULTS_ENV = "INTERPKIT_RESULTS_DIR"

__all__ = [
    "smoke_mode",
    "save_results",
    "seeds",
    "Claim",
    "claims_table",
    "claims_json",
    "check_claims",
    "paper_vs_measured",
    "md",
]
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def smoke_mode(smoke: bool | str | None = None) -> bool:
    """True when ``smoke`` is True, or it is None and the environment sets ``INTERPKIT_SMOKE=1``.

    Jupyter Book cannot inject papermill parameters, but the kernel inherits the environment,
    so one variable switches every notebook to its small, fast configuration. A string (the
    variable, or ``smoke`` given as text, e.g. by ``papermill -r``) is read as 1/true/yes/on or
    0/false/no/off/empty; anything else is a ``ValueError`` rather than a silent full run.
    """
    global _resolved_smoke
    if smoke is not None and not isinstance(smoke, str):
        _resolved_smoke = bool(smoke)
        return _resolved_smoke
    text, name = (
        (smoke, "smoke") if isinstance(smoke, str) else (os.environ.get(SMOKE_ENV, "0"), SMOKE_ENV)
    )
    value = text.strip().lower()
    if value not in _ON | _OFF:
        raise ValueError(
            f"{name}={text!r} is not a switch; use 1 (or true, yes, on) for the quick smoke "
            "configuration, 0 (or false, no, off, empty) for the full one."
        )
    _resolved_smoke = value in _ON
    return _resolved_smoke


#: What the chapter's ``smoke = ik.nb.smoke_mode(smoke)`` last resolved to (None before any call):
#: save_results records it, so a papermill ``-p smoke True`` run without the variable says smoke.
_resolved_smoke: bool | None = None


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


def save_results(
    stem: str,
    results: Mapping[str, Any],
    smoke: bool | None = None,
    *,
    missing_as_none: bool = False,
) -> Path:
    """Write a notebook's key numbers to ``<results_dir>/<stem>.json`` atomically; returns the path.

    The file records ``smoke``: the argument if given, else what :func:`smoke_mode` last resolved
    (the chapter's own setting), else the environment.

    A NaN or infinite number is refused (``ValueError`` naming its key): key numbers that did not
    come out are a defect to see, and JSON has no such numbers. Write ``None`` for "not applicable".

    Args:
        stem: the file name without ``.json`` (the chapter's name).
        results: the key numbers (NumPy numbers and tensors become plain numbers).
        smoke: whether the run was in smoke mode (None: as resolved, see above).
        missing_as_none: store NaN and infinite numbers as None instead of refusing them, for a
            chapter whose tables hold numbers that do not apply (e.g. an empty selection).
    Returns:
        The path written.
    """
    if not isinstance(stem, str) or not stem or Path(stem).name != stem or stem.endswith(".json"):
        raise ValueError(
            f"stem must be a plain file name without '.json', such as '03_input_resampling', "
            f"got {stem!r}."
        )
    payload = dict(results)
    payload.setdefault(
        "smoke",
        smoke_mode(smoke) if smoke is not None or _resolved_smoke is None else _resolved_smoke,
    )
    plain = json.loads(
        json.dumps(payload, default=_to_builtin)
    )  # NumPy and tensors as plain numbers
    if missing_as_none:
        plain = _finite_or_none(plain)
    bad = _non_finite(plain)
    if bad:
        raise ValueError(
            f"{stem}: results {', '.join(bad[:5])} are NaN or infinite; fix what computes them, "
            "or store None where a number does not apply."
        )
    return atomic_write_json(results_dir() / f"{stem}.json", plain)


def _finite_or_none(obj: Any) -> Any:
    """The JSON-like object with every NaN or infinite number replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def _non_finite(obj: Any, where: str = "") -> list[str]:
    """The keys (``a.b[2]``) of the NaN and infinite numbers in a JSON-like object."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "(the value)"]
    if isinstance(obj, dict):
        return [
            k
            for key, v in obj.items()
            for k in _non_finite(v, f"{where}.{key}" if where else str(key))
        ]
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
    """A table of claims: each row has ``claim``, ``paper``, ``measured`` and ``holds`` (bool or
    None).

    Shown in full (no truncated cells) when it is the last expression of a notebook cell.
    """
    columns = ["claim", "paper", "measured", "holds"]
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(
                f"row {i} must be a dict with keys {columns}, got {type(row).__name__}."
            )
        missing, unknown = (
            [c for c in columns[:3] if c not in row],
            [k for k in row if k not in columns],
        )
        if missing or unknown:  # pandas would show a missing cell as NaN and drop an unknown key
            what = " and ".join(
                [f"lacks {missing}"] * bool(missing)
                + [f"has unknown keys {unknown}"] * bool(unknown)
            )
            raise KeyError(
                f"row {i} {what}; each row has the keys {columns} (holds may be left out)."
            )
        holds = row.get("holds")
        if not (holds is None or isinstance(holds, (bool, np.bool_))):
            raise TypeError(
                f"row {i}: holds must be True, False or None, got {holds!r}; "
                "wrap a comparison in bool(...)."
            )
    df = _ClaimsTable(rows, columns=columns)
    df["holds"] = [
        ("yes" if r["holds"] else "no") if r.get("holds") is not None else "n/a" for r in rows
    ]
    return df


# ------------------------------------------------------------------------------- claims over seeds
def seeds(seed: int, smoke: bool, *, full: int = 3, quick: int = 1) -> list[int]:
    """The seeds a chapter runs its claims over: ``seed, seed + 1, ...``, ``full`` of them in the
    full configuration and ``quick`` in smoke mode (the chapter's ``seed`` parameter moves them
    all).

    Args:
        seed: the chapter's ``seed`` parameter (the first seed).
        smoke: whether the chapter runs in smoke mode.
        full: how many seeds in the full configuration (at least 3 for a claim to be a statistic).
        quick: how many in smoke mode.
    Returns:
        The list of seeds.
    """
    n = check_positive_int("quick" if smoke else "full", quick if smoke else full)
    return [int(seed) + i for i in range(n)]


class Claim:
    """One claim of a chapter, measured once per seed (or per independent run).

    Args:
        key: a short identifier (``"decoder_beats_baseline"``), the key in the results JSON.
        claim: the claim in words, as the chapter states it.
        paper: what the paper reports (with its number where it gives one).
        values: the measured number behind the claim, one per seed (e.g. a difference whose sign
            is the claim, or an accuracy).
        holds: whether the claim held, one per seed (same length as ``values``).
        asserted: True when the chapter asserts it (it must then hold for every seed run); False for
            a claim reported with its pass rate only (it did not hold on every seed of the sweep).
        fmt: format of the numbers in the table.
        note: a short remark shown after the numbers (a threshold, a unit).
    """

    def __init__(
        self,
        key: str,
        claim: str,
        paper: str,
        values: Iterable[float],
        holds: Iterable[bool],
        *,
        asserted: bool = True,
        fmt: str = ".3f",
        note: str = "",
    ) -> None:
        self.key, self.claim, self.paper, self.fmt, self.note = key, claim, paper, fmt, note
        self.values = [float(v) for v in values]
        self.holds = [bool(h) for h in holds]
        self.asserted = bool(asserted)
        if not self.values or len(self.values) != len(self.holds):
            raise ValueError(
                f"claim {key!r}: give one value and one holds flag per seed, got "
                f"{len(self.values)} values and {len(self.holds)} flags."
            )

    @property
    def passed(self) -> int:
        return sum(self.holds)

    @property
    def rate(self) -> str:
        """The pass rate as words, for example ``"2 of 3 seeds"`` (``"1 of 1 seed"``)."""
        n = len(self.holds)
        return f"{self.passed} of {n} seed{'s' * (n != 1)}"

    @property
    def span(self) -> str:
        """The mean and range over the seeds in the claim's format:
        ``"0.12 (from 0.10 to 0.15 over 3 seeds)"``."""
        v, f = self.summary(), self.fmt
        over = f"over {v['runs']} seed{'s' * (v['runs'] != 1)}"
        return f"{v['mean']:{f}} (from {v['min']:{f}} to {v['max']:{f}} {over})"

    def summary(self) -> dict[str, Any]:
        """Mean, sample standard deviation (0 for one run), min, max, pass count and the values."""
        v = np.asarray(self.values, dtype=float)
        return {
            "values": self.values,
            "holds": self.holds,
            "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()),
            "max": float(v.max()),
            "passed": self.passed,
            "runs": len(v),
            "asserted": self.asserted,
        }

    def measured(self) -> str:
        s, f = self.summary(), self.fmt
        if s["runs"] == 1:
            text = f"{s['mean']:{f}} (1 seed)"
        else:
            text = (
                f"{s['mean']:{f}} ± {s['sd']:{f}} "
                f"(min {s['min']:{f}}, max {s['max']:{f}}; {s['runs']} seeds)"
            )
        return f"{text}; {self.note}" if self.note else text


def claims_table(claims: Iterable[Claim]) -> pd.DataFrame:
    """The paper-vs-measured table of a chapter's claims: mean ± sd over seeds, the pass rate, and
    whether the chapter asserts the claim.

    Args:
        claims: the chapter's :class:`Claim` objects.
    Returns:
        A DataFrame (claim, paper, measured, holds, asserted) shown in full in a notebook.
    """
    rows = [
        {
            "claim": c.claim,
            "paper": c.paper,
            "measured": c.measured(),
            "holds": f"{c.passed}/{len(c.holds)} seeds",
            "asserted": "yes" if c.asserted else "no (reported)",
        }
        for c in claims
    ]
    return _ClaimsTable(rows, columns=["claim", "paper", "measured", "holds", "asserted"])


def claims_json(claims: Iterable[Claim]) -> dict[str, dict[str, Any]]:
    """The claims as ``{key: summary}`` for the results JSON (what the seed sweep reads)."""
    return {c.key: {"claim": c.claim, **c.summary()} for c in claims}


class ClaimFailed(AssertionError):
    """An asserted claim did not hold for every seed of the run."""


def check_claims(claims: Iterable[Claim], chapter: str) -> None:
    """Raise ``ClaimFailed`` naming the chapter and every asserted claim that did not hold on
    every seed, with its values; claims that are only reported never fail. Call it in the last
    cell, after the table and the results file are written, so a failure leaves both behind.
    """
    failed = [c for c in claims if c.asserted and not all(c.holds)]
    if failed:
        lines = [
            f"- {c.key}: {c.claim} -- held on {c.passed} of {len(c.holds)} seeds; values "
            + ", ".join(f"{v:{c.fmt}}" for v in c.values)
            for c in failed
        ]
        _show_failed(chapter, failed)
        raise ClaimFailed(
            f"{chapter}: {len(failed)} asserted claim(s) did not hold:\n"
            + "\n".join(lines)
            + "\nThe chapter's figures and paper-vs-measured table above show the run; if this "
            "machine or seed differs from the book's, please report it with the values."
        )


def _show_failed(chapter: str, failed: list[Claim]) -> None:
    """A red box in the notebook (and the rendered book) listing the claims that failed."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # outside IPython the exception's message says it all
        return
    if get_ipython() is None:
        return
    import html

    items = "".join(
        f"<li><b>{html.escape(c.claim)}</b>: held on {c.passed} of {len(c.holds)} seeds "
        f"({html.escape(c.measured())})</li>"
        for c in failed
    )
    display(
        HTML(
            f'<div class="admonition error"><p class="admonition-title">{html.escape(chapter)}: '
            f"{len(failed)} claim(s) did not hold in this run</p><ul>{items}</ul></div>"
        )
    )


# ------------------------------------------------------------------------ prose from numbers
class _Prose(string.Formatter):
    """str.format with three additions for prose about a run: a boolean chooses between two words
    (``{flag:?beats|loses to}``), a sequence of numbers gives its range (``{shares:%.0f-}`` ->
    ``45-80%`` with the numbers scaled by 100, ``{xs:.2f-}`` -> ``0.12-0.40``), and a list of words
    is joined with commas (``{names:,}``)."""

    def format_field(self, value: Any, spec: str) -> str:
        if spec.startswith("?"):
            yes, _, no = spec[1:].partition("|")
            return yes if value else no
        if spec == ",":
            return ", ".join(str(v) for v in value)
        if spec.endswith("-") and not isinstance(value, str):
            v = [float(x) for x in value]
            if spec.startswith("%"):
                f = spec[1:-1]
                return f"{100 * min(v):{f}}-{100 * max(v):{f}}%"
            return f"{min(v):{spec[:-1]}}-{max(v):{spec[:-1]}}"
        return super().format_field(value, spec)


def md(template: str, /, **values: Any) -> Any:
    """Markdown prose that states a run's numbers: ``template`` filled from ``values``.

    The template is ``str.format`` syntax (``{acc:.3f}``, ``{table[row]:.2f}``) with three
    additions: ``{flag:?yes words|no words}`` picks words by a boolean, ``{numbers:.2f-}`` writes
    the range ``min-max`` of a sequence (``{shares:%.0f-}`` as percentages, ``45-80%``), and
    ``{words:,}`` joins a list with commas. Leading indentation of the template is removed.

    Args:
        template: the text, with ``{name...}`` fields.
        **values: the values the fields name.
    Returns:
        An IPython ``Markdown`` object (shown as formatted text when it ends a cell), or the
        plain string when IPython is not installed.
    """
    try:
        text = _Prose().format(textwrap.dedent(template).strip(), **values)
    except KeyError as e:
        raise KeyError(f"md: the template names {e}, which is not among the values given.") from e
    try:
        from IPython.display import Markdown
    except ImportError:
        return text
    return Markdown(text)
