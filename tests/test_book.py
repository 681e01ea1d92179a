"""The book's structure, without building it: table of contents, chapter conventions, citations,
API reference and offline configuration. Fast (no notebook is executed, nothing is imported but
``interpkit``)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402

TOC = ROOT / "_toc.yml"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
BIB = ROOT / CONFIG["bibtex_bibfiles"][0]
TOC_FILES = build_book.toc_files(TOC)
NOTEBOOKS = [ROOT / f"{f}.ipynb" for f in TOC_FILES if (ROOT / f"{f}.ipynb").exists()]
PAPER_CHAPTER = re.compile(r"^0[1-5]_")  # one chapter per paper; 00_* introduce, 06_* compares
CITE = re.compile(r"\{(?:cite|cite:[a-z]+)\}`([^`]*)`")
API_MODULES = [
    "capture",
    "device",
    "data",
    "models",
    "nb",
    "io",
    "plot",
    "widgets",
    "checks",
    "cladec",
    "explainer",
    "resampling",
    "clustering",
    "dissection",
]


def bib_keys() -> list[str]:
    return re.findall(r"^\s*@\w+\s*\{\s*([^,\s]+)\s*,", BIB.read_text(), flags=re.M)


def bib_entry(key: str) -> str:
    text = BIB.read_text()
    m = re.search(r"@\w+\s*\{\s*" + re.escape(key) + r"\s*,(.*?)\n\}", text, flags=re.S)
    assert m, key
    return m.group(1)


def bib_field(key: str, field: str) -> str:
    m = re.search(rf"\b{field}\s*=\s*\{{(.*?)\}}\s*,?\s*$", bib_entry(key), flags=re.M | re.S)
    return re.sub(r"[{}]", "", m.group(1)) if m else ""


def norm(text: str) -> str:
    """Lower case, no markup or punctuation, single spaces: for 'does the title appear' checks."""
    text = re.sub(r"[*_`{}\\]", "", text.lower())
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(text.split())


def markdown_sources() -> dict[str, str]:
    """Markdown of every page in the book: the .md pages and the notebooks' markdown cells."""
    out = {}
    for f in TOC_FILES:
        md, nb = ROOT / f"{f}.md", ROOT / f"{f}.ipynb"
        if md.exists():
            out[md.name] = md.read_text()
        elif nb.exists():
            cells = nbformat.read(nb, as_version=4).cells
            out[nb.name] = "\n\n".join(c.source for c in cells if c.cell_type == "markdown")
    return out


def headings(nb_path: Path, level: int = 2) -> list[str]:
    """The markdown headings of exactly ``level`` ('##') of a notebook, in order (code fences skipped)."""
    out = []
    for cell in nbformat.read(nb_path, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for line in cell.source.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            m = re.match(r"^(#+)\s+(.*)$", line)
            if m and not fenced and len(m.group(1)) == level:
                out.append(m.group(2).strip())
    return out


# ----------------------------------------------------------------------------- table of contents
def test_every_toc_entry_exists():
    missing = [
        f for f in TOC_FILES if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


def test_toc_has_the_parts_of_the_book():
    captions = [p["caption"] for p in yaml.safe_load(TOC.read_text())["parts"]]
    assert captions[0] == "Getting started" and captions[-1] == "Appendices", captions
    appendices = [c["file"] for c in yaml.safe_load(TOC.read_text())["parts"][-1]["chapters"]]
    for page in (
        "book/reproduce",
        "book/api",
        "book/benchmarks",
        "book/glossary",
        "book/bibliography",
    ):
        assert page in appendices, f"{page} is missing from the appendices"


# -------------------------------------------------------------------------------------- citations
def test_bibliography_keys_are_unique():
    keys = bib_keys()
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert keys and not dupes, f"duplicate keys in {BIB.name}: {dupes}"


def test_every_cited_key_is_in_the_bibliography():
    known = set(bib_keys())
    unknown = {}
    for name, text in markdown_sources().items():
        keys = {k.strip() for group in CITE.findall(text) for k in group.split(",")}
        if keys - known:
            unknown[name] = sorted(keys - known)
    assert not unknown, f"cited but not in {BIB.name}: {unknown}"


# ------------------------------------------------------------------------------ chapter structure
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_opens_with_what_you_will_learn_and_run_time(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert re.search(r"```\{admonition\}\s*What you will learn", first.source, re.I), (
        f"{path.name}: the first cell needs a ```{{admonition}} What you will learn``` block"
    )
    assert re.search(r"\brun[ -]?time\b", first.source, re.I), (
        f"{path.name}: the first cell needs a run time statement ('Run time on a 2-core CPU: ...')"
    )


PAPER_NOTEBOOKS = [p for p in NOTEBOOKS if PAPER_CHAPTER.match(p.name)]


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=lambda p: p.stem)
def test_paper_chapter_opens_with_a_full_citation(path):
    first = nbformat.read(path, as_version=4).cells[0].source
    keys = [k.strip() for group in CITE.findall(first) for k in group.split(",")]
    assert keys, f"{path.name}: the first cell must cite the paper with {{cite}}`key`"
    key = keys[0]
    assert key in bib_keys(), f"{path.name}: {key} is not in {BIB.name}"
    title, year = bib_field(key, "title"), bib_field(key, "year")
    surname = bib_field(key, "author").split(" and ")[0].split(",")[0].strip()
    text = norm(first)
    lacking = [
        what
        for what, value in (("title", title), ("year", year), ("first author", surname))
        if norm(value) not in text
    ]
    assert not lacking, (
        f"{path.name}: the first cell cites {key} but does not spell out its "
        f"{', '.join(lacking)} ({surname}, {title!r}, {year})"
    )


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=lambda p: p.stem)
def test_paper_chapter_ends_with_paper_vs_measured_then_exercises(path):
    h2 = headings(path)
    assert len(h2) >= 2, f"{path.name}: no '## ' sections"
    assert re.match(r"exercises?\b", h2[-1], re.I), (
        f"{path.name}: the last section must be '## Exercises' (sections: {h2})"
    )
    assert re.search(r"paper\s+vs\.?\s+measured", h2[-2], re.I), (
        f"{path.name}: the section before Exercises must be '## Paper vs measured' (sections: {h2})"
    )


# ------------------------------------------------------------------------------- API reference
def test_api_page_documents_every_module_and_they_import():
    text = (ROOT / "book" / "api.md").read_text()
    documented = re.findall(r"^\.\. automodule:: (\S+)", text, flags=re.M)
    lacking = [m for m in API_MODULES if f"interpkit.{m}" not in documented]
    assert not lacking, f"book/api.md lacks automodule blocks for {lacking}"
    broken = {}
    for name in documented:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every module that autodoc would fail on
            broken[name] = f"{type(exc).__name__}: {exc}"
    assert not broken, f"modules the API page documents do not import: {broken}"


# ----------------------------------------------------------------------------------- offline
def test_config_loads_browser_scripts_from_the_book_not_a_cdn():
    sphinx = CONFIG["sphinx"]["config"]
    scripts = list(sphinx["nb_ipywidgets_js"])
    assert "vendor/require.js" in scripts and "vendor/embed-amd.js" in scripts
    assert scripts.index("interpkit-widgets.js") < scripts.index("vendor/embed-amd.js")
    assert (ROOT / "book" / "_static" / "interpkit-widgets.js").is_file()
    assert sphinx["mathjax_path"].startswith("vendor/mathjax/")
    remote = [s for s in [*scripts, sphinx["mathjax_path"]] if "//" in s]
    assert not remote, f"scripts from another host: {remote}"


def test_vendored_scripts_match_the_stamp_when_present():
    if not build_book.STAMP.exists():
        pytest.skip(
            "book/_static/vendor not populated yet (python tools/build_book.py --vendor-only)"
        )
    stamp = json.loads(build_book.STAMP.read_text())
    missing = [f for f in stamp["files"] if not (build_book.VENDOR / f).is_file()]
    assert not missing, f"vendored files missing: {missing[:5]}"
    assert build_book.CONTROLS in stamp["requirements"]["html-manager"]


def test_html_manager_is_picked_by_its_controls_dependency():
    pairs = [
        ("1.0.13", "^5.0.11"),
        ("1.0.14", "^5.0.12"),
        ("1.0.15", "^5.0.13"),
        ("1.0.0", "^5.0.0-rc.2"),
    ]
    assert build_book.pick_html_manager(pairs, "^5.0.13") == "1.0.15"
    assert build_book.pick_html_manager(pairs, "^5.0.12") == "1.0.14"
    assert build_book.pick_html_manager(pairs[:2], "^5.0.10") == "1.0.13"  # oldest above the floor
    assert build_book.pick_html_manager(pairs, "^5.0.20") == "1.0.15"  # newer front end: newest


def test_repository_url_is_configurable_and_the_readme_says_so():
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["binderhub_url"] and CONFIG["launch_buttons"]["colab_url"]
    assert (
        "repository" in (ROOT / "README.md").read_text()
        and "_config.yml" in (ROOT / "README.md").read_text()
    )


def test_execution_cache_is_dropped_when_interpkit_changes(tmp_path):
    fingerprint = build_book.source_fingerprint()
    assert fingerprint == build_book.source_fingerprint() and len(fingerprint) == 64
    build = tmp_path / "_build"
    assert not build_book.drop_stale_execution_cache(build, fingerprint)  # nothing cached yet
    (build / ".jupyter_cache").mkdir(parents=True)
    assert build_book.drop_stale_execution_cache(build, fingerprint)  # no stamp: unknown code
    assert not (build / ".jupyter_cache").exists()
    (build / ".jupyter_cache").mkdir()
    build_book.write_source_stamp(build, fingerprint)
    assert not build_book.drop_stale_execution_cache(build, fingerprint)  # same package: kept
    assert (build / ".jupyter_cache").exists()
    assert build_book.drop_stale_execution_cache(build, "0" * 64)  # package changed: dropped
    assert (
        not (build / ".jupyter_cache").exists() and not (build / build_book.SOURCE_STAMP).exists()
    )


def test_source_fingerprint_follows_the_package_files(tmp_path):
    pkg = tmp_path / "interpkit"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    first = build_book.source_fingerprint(tmp_path)
    (pkg / "a.py").write_text("x = 2\n")
    assert build_book.source_fingerprint(tmp_path) != first
