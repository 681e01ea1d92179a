"""Build a notebook from a compact cell list (used by chapter authors; notebooks are stored stripped).

Usage in a script: ``write_notebook(path, [("md", text), ("code", src), ("code", src, ["parameters"])])``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


#: The call that asserts a chapter's claims, and the tag its cell gets: with it, a failed claim is shown
#: in red in the executed chapter and the book still builds every page (tools/build_book.py then lists
#: the failures and fails); papermill (make test) still fails on it.
CLAIMS_CHECK = "ik.nb.check_claims("
CLAIMS_TAG = "raises-exception"


def write_notebook(path: str | Path, cells: list[tuple]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for cell in cells:
        kind, src = cell[0], cell[1].strip("\n")
        tags = list(cell[2]) if len(cell) > 2 else []
        if kind == "code" and CLAIMS_CHECK in src and CLAIMS_TAG not in tags:
            tags.append(CLAIMS_TAG)
        c = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = list(tags)
        nb.cells.append(c)
    for i, c in enumerate(nb.cells):  # stable ids keep diffs small
        c["id"] = f"{Path(path).stem[:20]}-{i:02d}"
    nbformat.validate(nb)
    path = Path(path)
    path.write_text(nbformat.writes(nb) + "\n")
    return path


def strip(path: str | Path) -> None:
    """Remove outputs and execution counts in place."""
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
        c.metadata.pop("execution", None)
        c.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
