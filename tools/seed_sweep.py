#!/usr/bin/env python
"""Run the chapters over several seeds and torch thread counts and tabulate which claims hold.

What ``make sweep`` runs::

    python tools/seed_sweep.py                         # every chapter, smoke mode, seeds 0..4, 1 and 2 threads
    python tools/seed_sweep.py --full                  # full mode, seeds 0..2 (each full run has its own 3 seeds)
    python tools/seed_sweep.py --chapters 02_explainer --seeds 1 2 --threads 1
    python tools/seed_sweep.py --report-only           # rebuild the table from the runs already recorded

Each run executes one chapter with papermill (``-p smoke``, ``-p seed``) in a kernel whose torch uses
``OMP_NUM_THREADS`` threads, and records what its results JSON says of its claims (the ``claims``
entry written with :func:`interpkit.nb.claims_json`), whether the notebook ran through, and how long it
took: one small JSON file per run under ``--out`` (kept, so a sweep can be extended or resumed with
``--skip-done``). The report (Markdown, ``--report``) gives, per claim, how many runs it held in,
the range of its values, and the runs it failed; the book's reproduce page includes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from interpkit.io import atomic_write_json, atomic_write_text  # noqa: E402

DEFAULT_OUT = ROOT / "book" / "seed_sweep"
DEFAULT_REPORT = ROOT / "book" / "seed_sweep.md"


def chapters_in_toc() -> list[str]:
    """The chapters (notebook stems) in book order."""
    sys.path.insert(0, str(ROOT / "tools"))
    from build_book import toc_files

    return [Path(f).stem for f in toc_files(ROOT / "_toc.yml") if f.startswith("notebooks/")]


def run_one(chapter: str, seed: int, threads: int, full: bool, out: Path, timeout: int) -> dict:
    """Execute one chapter once; returns (and writes) the run's record."""
    mode = "full" if full else "smoke"
    record = {
        "chapter": chapter,
        "seed": seed,
        "threads": threads,
        "mode": mode,
        "load": round(os.getloadavg()[0], 1),
    }  # run times mean little on a busy machine
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            INTERPKIT_RESULTS_DIR=tmp,
            MPLBACKEND="Agg",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        env.pop("INTERPKIT_SMOKE", None)
        cmd = [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "notebooks" / f"{chapter}.ipynb"),
            str(Path(tmp) / f"{chapter}.ipynb"),
            "-p",
            "smoke",
            str(not full),
            "-p",
            "seed",
            str(seed),
            "--cwd",
            str(ROOT / "notebooks"),
            "-k",
            "python3",
            "--no-progress-bar",
            "--execution-timeout",
            str(timeout),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        record["ran"] = proc.returncode == 0
        if proc.returncode != 0:
            err = [line for line in proc.stderr.splitlines() if "Error" in line or "Failed" in line]
            record["error"] = (err[-1] if err else proc.stderr.strip()[-300:])[:500]
        results = Path(tmp) / f"{chapter}.json"
        claims = json.loads(results.read_text()).get("claims", {}) if results.is_file() else {}
    record["claims"] = {
        k: {
            "held": bool(all(v["holds"])),
            "values": v["values"],
            "asserted": v["asserted"],
            "claim": v.get("claim", k),
        }
        for k, v in claims.items()
    }
    atomic_write_json(out / chapter / f"{mode}-seed{seed}-threads{threads}.json", record)
    status = "ok" if record["ran"] else f"FAILED ({record.get('error', '')[:120]})"
    held = sum(c["held"] for c in record["claims"].values())
    print(
        f"{chapter} {mode} seed {seed} threads {threads}: {status}; {held}/{len(record['claims'])} claims held; "
        f"{record['seconds']:.0f} s",
        flush=True,
    )
    return record


def load_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*.json"))]


def report(runs: list[dict]) -> str:
    """The Markdown table: claim x (mode) -> runs held / runs, value range, failing runs."""
    order = {c: i for i, c in enumerate(chapters_in_toc())}
    lines = [
        "| chapter | claim | asserted | mode | held in | values (min .. max) | failed runs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    times = []
    for chapter in sorted({r["chapter"] for r in runs}, key=lambda c: order.get(c, 99)):
        for mode in ("smoke", "full"):
            mine = [r for r in runs if r["chapter"] == chapter and r["mode"] == mode]
            if not mine:
                continue
            secs = sorted(r["seconds"] for r in mine)
            loads = sorted(r["load"] for r in mine if "load" in r)
            load = f"{loads[0]:.1f} .. {loads[-1]:.1f}" if loads else "not recorded"
            crashed = [
                r
                for r in mine
                if not r["ran"] and not any(not c["held"] for c in r["claims"].values())
            ]
            times.append(
                f"| {chapter} | {mode} | {len(mine)} | {secs[0]:.0f} .. {secs[-1]:.0f} s | "
                f"{load} | {len(crashed)} |"
            )
            keys = list(dict.fromkeys(k for r in mine for k in r["claims"]))
            for key in keys:
                have = [r for r in mine if key in r["claims"]]
                held = [r for r in have if r["claims"][key]["held"]]
                vals = [v for r in have for v in r["claims"][key]["values"]]
                fails = ", ".join(
                    f"s{r['seed']}/t{r['threads']}" for r in have if not r["claims"][key]["held"]
                )
                text = have[0]["claims"][key]["claim"].replace("|", "\\|")
                asserted = "yes" if have[-1]["claims"][key]["asserted"] else "no"
                lines.append(
                    f"| {chapter} | {text} | {asserted} | {mode} | {len(held)}/{len(mine)} | "
                    f"{min(vals):.3g} .. {max(vals):.3g} | {fails or '-'} |"
                )
    table = "\n".join(lines)
    timing = "\n".join(
        [
            "| chapter | mode | runs | run time | load average at the start | runs that stopped on an error |",
            "| --- | --- | --- | --- | --- | --- |",
            *times,
        ]
    )
    seeds = sorted({r["seed"] for r in runs})
    threads = sorted({r["threads"] for r in runs})
    return (
        f"Runs recorded: {len(runs)} (seeds {', '.join(map(str, seeds))}; torch threads "
        f"{', '.join(map(str, threads))}). A run's claim counts as held when it held for every seed "
        "that run measured (a full run measures three).\n\n" + table + "\n\n" + timing + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--chapters", nargs="*", help="notebook stems (default: every chapter in _toc.yml)"
    )
    ap.add_argument("--seeds", nargs="*", type=int, help="default 0..4 (smoke) or 0..2 (--full)")
    ap.add_argument(
        "--threads", nargs="*", type=int, default=[1, 2], help="torch thread counts (default 1 2)"
    )
    ap.add_argument("--full", action="store_true", help="full mode instead of smoke mode")
    ap.add_argument(
        "--jobs", type=int, default=1, help="runs at once (each uses --threads threads)"
    )
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the per-run records")
    ap.add_argument(
        "--report", type=Path, default=DEFAULT_REPORT, help="Markdown table written at the end"
    )
    ap.add_argument("--skip-done", action="store_true", help="skip runs already recorded in --out")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from --out")
    args = ap.parse_args(argv)
    if not args.report_only:
        chapters = args.chapters or chapters_in_toc()
        unknown = [c for c in chapters if not (ROOT / "notebooks" / f"{c}.ipynb").is_file()]
        if unknown:
            ap.error(f"no notebook {unknown}; chapters are {chapters_in_toc()}")
        seeds = args.seeds if args.seeds is not None else list(range(3 if args.full else 5))
        mode = "full" if args.full else "smoke"
        todo = [
            (c, s, t)
            for c in chapters
            for s in seeds
            for t in args.threads
            if not (args.skip_done and (args.out / c / f"{mode}-seed{s}-threads{t}.json").is_file())
        ]
        print(f"seed_sweep: {len(todo)} runs ({mode}), {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(lambda job: run_one(*job, args.full, args.out, args.timeout), todo))
    runs = load_runs(args.out)
    if not runs:
        print(f"seed_sweep: no runs recorded in {args.out}", file=sys.stderr)
        return 1
    atomic_write_text(args.report, report(runs))
    print(f"seed_sweep: report of {len(runs)} runs -> {args.report}")
    failed = [
        r
        for r in runs
        if any(c["asserted"] and not c["held"] for c in r["claims"].values()) or not r["ran"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
