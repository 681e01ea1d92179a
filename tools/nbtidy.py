"""Keep the chapter notebooks tidy: the ``.ipynb`` files in ``notebooks/`` are the only source.

``python tools/nbtidy.py notebooks/*.ipynb`` (or with ``--check``: report, change nothing) does,
in place, what every stored chapter must satisfy (``tests/test_notebooks.py`` checks it):

- no outputs, no execution counts, no papermill or execution metadata;
- the cell that calls ``ik.nb.check_claims(`` is tagged ``raises-exception``: a failed claim is
  then shown in red in the built chapter while the book still builds every page
  (``tools/build_book.py`` lists the failures and fails), and papermill (``make test``) still
  fails on it;
- stable cell ids (``<stem>-NN``), so that diffs stay small.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

#: The call that asserts a chapter's claims, and the tag its cell gets.
CLAIMS_CHECK = "ik.nb.check_claims("
CLAIMS_TAG = "raises-exception"


def tidy_notebook(nb: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """Return ``nb`` tidied in place (see the module docstring)."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for i, c in enumerate(nb.cells):
        c["id"] = f"{stem[:20]}-{i:02d}"
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            c.metadata.pop(key, None)
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
            tags = c.metadata.get("tags", [])
            if CLAIMS_CHECK in c.source and CLAIMS_TAG not in tags:
                c.metadata["tags"] = [*tags, CLAIMS_TAG]
    return nb


def tidy(path: str | Path, check: bool = False) -> bool:
    """Tidy the notebook at ``path`` (in place unless ``check``); True if it was already tidy."""
    path = Path(path)
    before = nbformat.read(path, as_version=4)
    nb = tidy_notebook(copy.deepcopy(before), path.stem)
    nbformat.validate(nb)
    if nb != before and not check:
        path.write_text(nbformat.writes(nb) + "\n")
    return nb == before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="only report notebooks that are not tidy")
    args = ap.parse_args(argv)
    untidy = [p for p in args.notebooks if not tidy(p, check=args.check)]
    for p in untidy:
        print(f"{p}: {'not tidy' if args.check else 'tidied'}")
    return 1 if (args.check and untidy) else 0


if __name__ == "__main__":
    sys.exit(main())
