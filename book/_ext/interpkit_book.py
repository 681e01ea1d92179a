"""Sphinx helpers for the interpkit book.

``{interpkit-benchmarks}`` lists every ``benchmarks/bench_*.py`` of the repository with its
docstring
(what it measures, against which baseline), the command that runs it and, when the benchmark has
been run (``results/bench_<name>.json`` or ``$INTERPKIT_RESULTS_DIR/bench_<name>.json``), its last
numbers as tables. The page is re-read whenever a benchmark script or result file appears, changes
or disappears.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

__version__ = "1.0"
_ENV_KEY = "interpkit_benchmarks_fingerprint"


def _repo_root(app) -> Path:
    return Path(app.config.interpkit_repo_root or app.srcdir).resolve()


def _result_dirs(app) -> list[Path]:
    dirs = [_repo_root(app) / "results"]
    env_dir = os.environ.get("INTERPKIT_RESULTS_DIR")
    if env_dir:
        dirs.append(Path(env_dir))
    return dirs


def _benchmarks(app) -> list[tuple[Path, Path | None]]:
    """(script, newest result file or None) for every benchmark script."""
    out = []
    for script in sorted((_repo_root(app) / "benchmarks").glob("bench_*.py")):
        found = [d / f"{script.stem}.json" for d in _result_dirs(app)]
        found = [f for f in found if f.is_file()]
        out.append((script, max(found, key=lambda f: f.stat().st_mtime) if found else None))
    return out


def _fingerprint(app) -> list:
    fp = []
    for script, result in _benchmarks(app):
        fp.append([script.name, script.stat().st_mtime_ns])
        if result is not None:
            fp.append([str(result), result.stat().st_mtime_ns])
    return fp


# ------------------------------------------------------------------------------ text -> docutils
def _inline(text: str) -> list[nodes.Node]:
    """Plain text with ``literal`` / `literal` spans."""
    parts = re.split(r"(``[^`]+``|`[^`]+`)", text)
    out: list[nodes.Node] = []
    for part in parts:
        if not part:
            continue
        if part.startswith("`"):
            code = part.strip("`")
            out.append(nodes.literal(code, code))
        else:
            out.append(nodes.Text(part))
    return out


def _docstring_nodes(doc: str) -> list[nodes.Node]:
    """A benchmark docstring (paragraphs, ``*`` bullets, indented or ``Usage:`` commands) as
    nodes."""
    out: list[nodes.Node] = []
    for block in re.split(r"\n\s*\n", doc.strip()):
        lines = block.splitlines()
        if not lines:
            continue
        if all(line.startswith(("    ", "\t")) for line in lines) or lines[0].startswith("Usage:"):
            code = "\n".join(line.strip() for line in lines).removeprefix("Usage:").strip()
            out.append(nodes.literal_block(code, code, language="bash"))
        elif lines[0].lstrip().startswith(("* ", "- ")):
            items: list[str] = []
            for line in lines:
                if line.lstrip().startswith(("* ", "- ")):
                    items.append(line.lstrip()[2:])
                elif items:
                    items[-1] += " " + line.strip()
            bullets = nodes.bullet_list()
            for item in items:
                bullets += nodes.list_item("", nodes.paragraph("", "", *_inline(item)))
            out.append(bullets)
        else:
            text = " ".join(line.strip() for line in lines)
            out.append(nodes.paragraph("", "", *_inline(text)))
    return out


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3g}" if abs(value) < 1e5 else f"{value:.3e}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:80]
    return str(value)


def _table(header: list[str], rows: list[list[str]], caption: str) -> nodes.table:
    table = nodes.table(classes=["interpkit-bench"])
    table += nodes.title(caption, caption)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for target, cells in ((head, [header]), (body, rows)):
        for cells_row in cells:
            row = nodes.row()
            for cell in cells_row:
                row += nodes.entry("", nodes.paragraph(cell, cell))
            target += row
    return table


def _result_nodes(result: Path, root: Path) -> list[nodes.Node]:
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError) as exc:
        return [nodes.paragraph("", f"(could not read {result.name}: {exc})")]
    try:
        shown = result.resolve().relative_to(root).as_posix()
    except ValueError:
        shown = result.name
    out: list[nodes.Node] = [
        nodes.paragraph(
            "",
            "",
            nodes.Text("Last measured numbers, from "),
            nodes.literal(shown, shown),
            nodes.Text(":"),
        )
    ]
    if not isinstance(data, dict):
        return out + [nodes.literal_block(_fmt(data), _fmt(data))]
    scalars = [[k, _fmt(v)] for k, v in data.items() if not isinstance(v, (list, dict))]
    if scalars:
        out.append(_table(["field", "value"], scalars, f"{result.stem}: summary"))
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            cols: list[str] = []
            for r in value:
                cols += [c for c in r if c not in cols and not isinstance(r[c], (list, dict))]
            rows = [
                ["" if r.get(c) is None else _fmt(r[c]) for c in cols] for r in value
            ]  # null: as NaN, blank
            out.append(_table(cols, rows, f"{result.stem}: {key}"))
        elif isinstance(value, dict) and value:
            rows = [[k, _fmt(v)] for k, v in value.items()]
            out.append(_table(["field", "value"], rows, f"{result.stem}: {key}"))
    return out


class BenchmarksDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        app = self.env.app
        root = _repo_root(app)
        self.env.note_dependency(str(Path(__file__).resolve()))
        fingerprints = getattr(self.env, _ENV_KEY, {})
        fingerprints[self.env.docname] = _fingerprint(app)
        setattr(self.env, _ENV_KEY, fingerprints)
        out: list[nodes.Node] = []
        benches = _benchmarks(app)
        if not benches:
            return [nodes.paragraph("", "No benchmark scripts were found in benchmarks/.")]
        for script, result in benches:
            section = nodes.section(ids=[nodes.make_id(f"bench-{script.stem}")])
            title = f"{script.name}"
            section += nodes.title(title, "", nodes.literal(title, title))
            doc = ast.get_docstring(ast.parse(script.read_text())) or "(no description)"
            described = _docstring_nodes(doc)
            section += described
            cmd = f"python benchmarks/{script.name}"
            if not any(isinstance(n, nodes.literal_block) for n in described):  # no usage line
                section += nodes.paragraph("", "Run it with:")
                section += nodes.literal_block(cmd, cmd, language="bash")
            if result is None:
                section += nodes.paragraph(
                    "",
                    "",
                    nodes.Text("Not run on this machine yet: "),
                    nodes.literal(cmd, cmd),
                    nodes.Text(" (or "),
                    nodes.literal("make bench", "make bench"),
                    nodes.Text(") writes the numbers, and the next book build shows them."),
                )
            else:
                section += _result_nodes(result, root)
            out.append(section)
        return out


_PROSE_TYPE = re.compile(r"^:type: ([A-Za-z][A-Za-z'-]*(?: [A-Za-z'-]+){3,})$")


def _undo_prose_type(app, what, name, obj, options, lines):
    """Napoleon reads the first line of an attribute's docstring, ``One row per unit: ...``, as
    ``type: description``. When that "type" is plainly prose (four or more words), put it back."""
    if what not in ("attribute", "data", "property") or not lines:
        return
    idx = max((i for i, line in enumerate(lines) if line.strip()), default=None)
    m = _PROSE_TYPE.match(lines[idx].strip()) if idx is not None else None
    if m and lines[0].strip():
        lines[0] = f"{m.group(1)}: {lines[0].lstrip()}"
        del lines[idx]
        while lines and not lines[-1].strip():
            lines.pop()


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    """Drop scripts that appear twice on a page (sphinx-thebe's inline ``const THEBE_JS_URL = ...``
    is added once with filename None and once with '', a SyntaxError in the browser)."""
    files = context.get("script_files")
    if not isinstance(files, list):
        return
    seen, unique = set(), []
    for js in files:
        attrs = getattr(js, "attributes", {})
        key = (
            getattr(js, "filename", str(js)) or "",
            json.dumps(attrs, sort_keys=True, default=str),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    if len(unique) != len(files):
        context["script_files"] = unique


def _outdated(app, env, added, changed, removed):
    fingerprints = getattr(env, _ENV_KEY, {})
    now = _fingerprint(app)
    return [doc for doc, fp in fingerprints.items() if fp != now and doc in env.found_docs]


def _purge(app, env, docname):
    getattr(env, _ENV_KEY, {}).pop(docname, None)


def setup(app):
    app.add_config_value("interpkit_repo_root", "", "env")
    app.add_directive("interpkit-benchmarks", BenchmarksDirective)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("autodoc-process-docstring", _undo_prose_type, priority=900)  # after napoleon (500)
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after per-page scripts (500)
    return {"version": __version__, "parallel_read_safe": False, "parallel_write_safe": True}
