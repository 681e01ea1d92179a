#!/usr/bin/env python
"""Build the Jupyter Book: vendor the browser scripts, then ``jupyter-book build -W -n --keep-going``.

What ``make book`` runs. Modes::

    python tools/build_book.py            # every notebook executed (cached) -> _build/html
    python tools/build_book.py --smoke    # INTERPKIT_SMOKE=1 -> _build/smoke/_build/html (own cache)
    python tools/build_book.py --no-execute --notebooks-from .cache/executed --output DIR
                                          # already executed notebooks, execution off -> DIR/_build/html
    python tools/build_book.py --vendor-only

Offline widgets and maths. By default a built book fetches RequireJS, the ipywidgets HTML manager and
MathJax from CDNs. This script downloads them once from the npm registry (``npm pack``) into
``book/_static/vendor/`` (git-ignored) and ``_config.yml`` points the pages at them:

* ``@jupyter-widgets/html-manager``: the 1.x release whose dependency on ``@jupyter-widgets/controls``
  matches the one of the installed ``jupyterlab_widgets`` (the front end that ships with the installed
  ipywidgets), read from ``share/jupyter/labextensions/@jupyter-widgets/jupyterlab-manager/package.json``;
  ``dist/embed-amd.js`` and the icon fonts it loads (relative to its AMD module URLs, which
  ``book/_static/interpkit-widgets.js`` roots in the vendor folder);
* ``requirejs@2``: ``require.js``;
* ``mathjax@3`` (the major version Sphinx uses): ``es5/`` without the speech engine and SVG output.

``book/_static/vendor/versions.json`` records what was asked for and what was installed; when it matches
and every file is present npm is not called at all, so later builds need neither npm nor a network.

After the build, every page is checked: each ``<script src>`` and stylesheet must be a file inside the
built book (nothing is loaded from another host), relative paths included.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_static" / "vendor"
STAMP = VENDOR / "versions.json"
LAB_MANAGER = Path("share/jupyter/labextensions/@jupyter-widgets/jupyterlab-manager/package.json")
HTML_MANAGER = "@jupyter-widgets/html-manager"
CONTROLS = "@jupyter-widgets/controls"
REQUIREJS_SPEC = "requirejs@2"
MATHJAX_SPEC = "mathjax@3"
FONT_SUFFIXES = (
    ".woff",
    ".woff2",
    ".ttf",
)  # what browsers ask for; .eot/.svg fonts were for IE/old iOS
# embed-amd.js loads its icon fonts relative to the URLs of its AMD modules (module.uri), which
# book/_static/interpkit-widgets.js roots in vendor/ (RequireJS baseUrl); these are the two folders.
FONT_DIRS = ("@jupyter-widgets", "@jupyter-widgets/html-manager/dist")
LAYOUT = 2  # bump when the vendored file layout changes
# MathJax es5 parts left out: the speech rule engine (loaded only when a reader turns speech on in
# MathJax's menu), SVG output and the Node entry point. Everything TeX/CHTML can autoload stays.
MATHJAX_SKIP = re.compile(r"^es5/(sre/|node-main\.js|.*svg.*|tex-chtml-full-speech\.js)")
EXIT_VENDOR = 3  # exit status when the scripts cannot be vendored (tests skip on it)


class VendorError(RuntimeError):
    """The browser scripts could not be obtained."""


# --------------------------------------------------------------------------------------- vendoring
def installed_controls_range(prefix: Path = Path(sys.prefix)) -> str:
    """The ``@jupyter-widgets/controls`` range the installed widget front end is built against."""
    path = prefix / LAB_MANAGER
    if not path.is_file():
        raise VendorError(
            f"{path} not found: install the book dependencies first "
            "(`make setup`, or `pip install -e '.[book]'`, which brings ipywidgets and "
            "jupyterlab_widgets), then run this script with that environment's python"
        )
    return json.loads(path.read_text())["dependencies"][CONTROLS]


def vendor_requirements() -> dict:
    return {
        "html-manager": f"1.x with {CONTROLS} {installed_controls_range()}",
        "requirejs": REQUIREJS_SPEC,
        "mathjax": MATHJAX_SPEC,
        "layout": LAYOUT,
    }


def _npm(*args: str, cwd: Path | None = None, timeout: int = 300) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError("npm was not found")
    try:
        proc = subprocess.run(
            [npm, *args, "--no-fund", "--no-audit", "--loglevel=error"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise VendorError(f"`npm {' '.join(args)}` timed out after {timeout} s (offline?)") from exc
    if proc.returncode != 0:
        raise VendorError(f"`npm {' '.join(args)}` failed:\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _caret_floor(rng: str) -> tuple[int, ...] | None:
    """``^5.0.13`` -> (5, 0, 13); None for anything else (pre-releases, unions)."""
    m = re.fullmatch(r"\^(\d+)\.(\d+)\.(\d+)", rng.strip())
    return tuple(int(g) for g in m.groups()) if m else None


def _version_key(v: str) -> tuple:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(.*)", v)
    return (int(m[1]), int(m[2]), int(m[3]), m[4] == "", m[4]) if m else (-1,)


def pick_html_manager(candidates: list[tuple[str, str]], wanted: str) -> str:
    """The html-manager version for the controls range ``wanted``, from (version, controls range) pairs.

    The release that declares exactly ``wanted`` if there is one (1.0.15 for ^5.0.13); otherwise the
    oldest release whose caret range starts at or above ``wanted``'s floor within the same major
    version (it bundles controls that satisfy ``wanted``); otherwise the newest 1.x release.
    """
    stable = [(v, r) for v, r in candidates if re.fullmatch(r"1\.\d+\.\d+", v)]
    if not stable:
        raise VendorError(f"no stable {HTML_MANAGER} 1.x release found")
    exact = [v for v, r in stable if r.strip() == wanted.strip()]
    if exact:
        return max(exact, key=_version_key)
    floor = _caret_floor(wanted)
    if floor is not None:
        ok = [
            v
            for v, r in stable
            if (f := _caret_floor(r)) is not None and f[0] == floor[0] and f >= floor
        ]
        if ok:
            return min(ok, key=_version_key)
    newest = max((v for v, _ in stable), key=_version_key)
    print(
        f"build_book: warning: no {HTML_MANAGER} release matches {CONTROLS} {wanted}; using {newest}",
        file=sys.stderr,
    )
    return newest


def resolve_versions(req: dict) -> dict:
    wanted = installed_controls_range()
    out = json.loads(
        _npm("view", f"{HTML_MANAGER}@1", "version", f"dependencies.{CONTROLS}", "--json")
    )
    rows = out if isinstance(out, list) else [out]
    candidates = [(r["version"], r.get(f"dependencies.{CONTROLS}", "")) for r in rows]
    resolved = {"html-manager": pick_html_manager(candidates, wanted)}
    for key, spec in (("requirejs", REQUIREJS_SPEC), ("mathjax", MATHJAX_SPEC)):
        versions = json.loads(_npm("view", spec, "version", "--json"))
        versions = versions if isinstance(versions, list) else [versions]
        resolved[key] = max(versions, key=_version_key)
    return resolved


def _pack(spec: str, dest: Path) -> tarfile.TarFile:
    info = json.loads(_npm("pack", spec, "--json", "--pack-destination", str(dest), cwd=dest))
    return tarfile.open(dest / info[0]["filename"])


def _copy_member(tf: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    """Write one regular file of the tarball to ``target`` (names are ours: no path traversal)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.extractfile(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target.as_posix()


def _stamp_ok(req: dict) -> bool:
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("requirements") == req and all(
        (VENDOR / f).is_file() for f in stamp.get("files", [])
    )


def vendor(force: bool = False) -> dict:
    """Make sure ``book/_static/vendor`` holds the scripts for ``req``; returns the stamp."""
    req = vendor_requirements()
    if not force and _stamp_ok(req):
        return json.loads(STAMP.read_text())
    print(f"build_book: vendoring browser scripts from the npm registry ({req})", flush=True)
    resolved = resolve_versions(req)
    VENDOR.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vendor-", dir=VENDOR.parent) as tmp:
        tmp = Path(tmp)
        new = tmp / "vendor"
        files: list[str] = []
        with _pack(f"{HTML_MANAGER}@{resolved['html-manager']}", tmp) as tf:
            for m in tf.getmembers():
                name = m.name.removeprefix("package/")
                if m.isfile() and name == "dist/embed-amd.js":
                    files.append(_copy_member(tf, m, new / "embed-amd.js"))
                elif m.isfile() and name.startswith("dist/") and name.endswith(FONT_SUFFIXES):
                    for folder in FONT_DIRS:
                        files.append(_copy_member(tf, m, new / folder / Path(name).name))
        with _pack(f"requirejs@{resolved['requirejs']}", tmp) as tf:
            files.append(_copy_member(tf, tf.getmember("package/require.js"), new / "require.js"))
        with _pack(f"mathjax@{resolved['mathjax']}", tmp) as tf:
            for m in tf.getmembers():
                name = m.name.removeprefix("package/")
                if m.isfile() and name.startswith("es5/") and not MATHJAX_SKIP.match(name):
                    files.append(_copy_member(tf, m, new / "mathjax" / name.removeprefix("es5/")))
        files = sorted(Path(f).relative_to(new).as_posix() for f in files)
        for must in ("require.js", "embed-amd.js", "mathjax/tex-mml-chtml.js"):
            if must not in files:
                raise VendorError(f"the npm packages did not contain {must}")
        stamp = {"requirements": req, "resolved": resolved, "files": files}
        (new / "versions.json").write_text(json.dumps(stamp, indent=2) + "\n")
        old = tmp / "old"
        if VENDOR.exists():
            VENDOR.rename(old)
        new.rename(VENDOR)
    print(f"build_book: vendored {resolved} ({len(files)} files) into {VENDOR.relative_to(ROOT)}")
    return stamp


VENDOR_HELP = """\
The book loads RequireJS, the ipywidgets HTML manager and MathJax from book/_static/vendor/ so that it
works offline; they come from the npm registry once, with `npm pack`. To proceed, either
  * install Node.js and npm (Debian: apt-get install npm) and make the npm registry reachable, then
    run this command again (later builds reuse the files and need no network), or
  * copy book/_static/vendor/ (with its versions.json) from a machine where the build worked."""


# ---------------------------------------------------------------------------------------- building
def toc_files(toc: Path) -> list[str]:
    import yaml

    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    data = yaml.safe_load(toc.read_text())
    files.append(str(data["root"]))
    walk(data.get("parts", data.get("chapters", [])))
    return files


def _copy_hiding_injected_parameters(src: Path, dest: Path) -> None:
    """Copy a notebook executed by papermill; its injected parameters cell is not shown in the book."""
    nb = json.loads(src.read_text())
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "remove-cell"]
    dest.write_text(json.dumps(nb))


def stage_executed(notebooks_from: Path, dest: Path, toc: Path) -> Path:
    """A copy of the book sources whose notebooks come from ``notebooks_from``, execution off."""
    import yaml

    src = dest / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    shutil.copytree(ROOT / "book", src / "book", symlinks=False)
    shutil.copytree(
        ROOT / "notebooks", src / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", ".*")
    )
    shutil.copyfile(toc, src / "_toc.yml")
    missing = []
    for f in toc_files(toc):
        if (ROOT / f"{f}.ipynb").exists() or f.startswith("notebooks/"):
            nb = notebooks_from / f"{Path(f).name}.ipynb"
            if not nb.is_file():
                missing.append(nb.name)
                continue
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            _copy_hiding_injected_parameters(nb, src / f"{f}.ipynb")
    if missing:
        raise SystemExit(
            f"build_book: {notebooks_from} lacks executed notebooks: {', '.join(missing)}"
        )
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config.setdefault("sphinx", {}).setdefault("config", {})["interpkit_repo_root"] = str(ROOT)
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return src


_TAG = re.compile(r"<(script|link)\b([^>]*)>", re.I)
_ATTR = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def page_assets(text: str) -> list[str]:
    """``src`` of every script and ``href`` of every stylesheet of an HTML page."""
    urls = []
    for tag, attrs in _TAG.findall(text):
        a = {k.lower(): v1 or v2 for k, v1, v2 in _ATTR.findall(attrs)}
        if tag.lower() == "script" and a.get("src"):
            urls.append(html.unescape(a["src"]))
        elif tag.lower() == "link" and "stylesheet" in a.get("rel", "") and a.get("href"):
            urls.append(html.unescape(a["href"]))
    return urls


def check_assets(html_dir: Path) -> list[str]:
    """Problems with scripts and stylesheets: remote ones, and local ones that do not exist."""
    problems = []
    for page in sorted(html_dir.rglob("*.html")):
        rel = page.relative_to(html_dir)
        if rel.parts[0] == "_static":  # theme templates, not pages
            continue
        for url in page_assets(page.read_text(errors="replace")):
            if re.match(r"^([a-z]+:)?//", url, re.I):
                problems.append(f"{rel}: loads {url} from another host")
                continue
            path = url.split("?")[0].split("#")[0]
            if not (page.parent / path).resolve().is_file():
                problems.append(f"{rel}: {url} does not exist")
    return problems


SOURCE_STAMP = (
    ".interpkit-source"  # in the build folder: the package the notebooks were executed with
)


def source_fingerprint(root: Path = ROOT) -> str:
    """SHA-256 of the ``interpkit`` package's Python files (paths and contents)."""
    h = hashlib.sha256()
    for f in sorted((root / "interpkit").rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def drop_stale_execution_cache(build_dir: Path, fingerprint: str) -> bool:
    """Remove ``build_dir/.jupyter_cache`` when it was filled with another ``interpkit``.

    jupyter-book's cache keys each notebook on its own code only, so after a change to the package
    the book would show outputs of the old code. Returns True when the cache was removed (every
    page must then be read again). A cache without a stamp (from an older build) counts as stale.
    """
    cache = build_dir / ".jupyter_cache"
    stamp = build_dir / SOURCE_STAMP
    if not cache.exists():
        return False
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return False
    shutil.rmtree(cache)
    stamp.unlink(missing_ok=True)
    return True


def write_source_stamp(build_dir: Path, fingerprint: str) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = build_dir / f"{SOURCE_STAMP}.tmp"
    tmp.write_text(fingerprint + "\n")
    tmp.replace(build_dir / SOURCE_STAMP)


def jupyter_book(
    source: Path, output: Path | None, toc: Path | None, fresh: bool, env: dict
) -> int:
    cmd = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(source),
        "-W",
        "-n",
        "--keep-going",
    ]
    if output is not None:
        cmd += ["--path-output", str(output)]
    if toc is not None:
        cmd += ["--toc", str(toc)]
    if fresh:
        cmd.append("--all")
    print("build_book:", " ".join(cmd[3:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def chapter_failures(build_dir: Path) -> list[str]:
    """What went wrong in the executed chapters of a build: every error output of a notebook in
    ``jupyter_execute/`` (a failed claim check, whose cell is tagged ``raises-exception`` so that the
    chapter is still rendered, with the failure shown in red) and every execution report in
    ``html/reports/`` (a notebook that stopped on an error and is rendered without outputs)."""
    import nbformat

    found = []
    for nb_path in sorted((build_dir / "jupyter_execute").rglob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if out.get("output_type") == "error":
                    found.append(f"{nb_path.stem}: {out.get('ename')}: {out.get('evalue')}")
    for log in sorted((build_dir / "html" / "reports").rglob("*.log")):
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        found.append(
            f"{log.name.split('.')[0]}: execution stopped; {' | '.join(tail)} (full log: {log})"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="run notebooks with INTERPKIT_SMOKE=1 into _build/smoke (separate cache)",
    )
    ap.add_argument("--no-execute", action="store_true", help="do not execute notebooks")
    ap.add_argument(
        "--notebooks-from",
        type=Path,
        help="with --no-execute: take the (executed) notebooks from this folder",
    )
    ap.add_argument(
        "--output", type=Path, help="output folder (the HTML lands in OUTPUT/_build/html)"
    )
    ap.add_argument("--toc", type=Path, help="another table of contents (default: _toc.yml)")
    ap.add_argument("--all", action="store_true", help="rebuild every page (Sphinx --all)")
    ap.add_argument("--vendor-only", action="store_true", help="only vendor the browser scripts")
    ap.add_argument(
        "--force-vendor", action="store_true", help="download the browser scripts again"
    )
    args = ap.parse_args(argv)
    if args.notebooks_from is not None and not args.no_execute:
        ap.error("--notebooks-from needs --no-execute")
    if args.smoke and args.no_execute:
        ap.error("--smoke and --no-execute do not go together")

    t0 = time.perf_counter()
    try:
        stamp = vendor(force=args.force_vendor)
    except VendorError as exc:
        print(
            f"build_book: cannot vendor the browser scripts: {exc}\n\n{VENDOR_HELP}",
            file=sys.stderr,
        )
        return EXIT_VENDOR
    t_vendor = time.perf_counter() - t0
    if args.vendor_only:
        print(f"build_book: scripts ready in {VENDOR.relative_to(ROOT)}: {stamp['resolved']}")
        return 0

    env = dict(os.environ)
    # Kernels draw figures inline only without an inherited non-interactive backend (e.g. Agg).
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    toc = (args.toc or ROOT / "_toc.yml").resolve()
    source, output = ROOT, args.output
    if args.smoke:
        env["INTERPKIT_SMOKE"] = "1"
        output = output or ROOT / "_build" / "smoke"
    elif args.no_execute:
        output = (output or ROOT / "_build" / "no-execute").resolve()
        if args.notebooks_from is not None:
            source = stage_executed(args.notebooks_from.resolve(), output, toc)
            toc = source / "_toc.yml"
        else:
            source = stage_executed(ROOT / "notebooks", output, toc)
            toc = source / "_toc.yml"
    else:
        env.pop("INTERPKIT_SMOKE", None)  # the published book is the full configuration
    html_dir = (output or ROOT) / "_build" / "html"

    # Sphinx reports a page's warnings only when it reads the page, so after a failed build the next
    # one re-reads every page (notebooks come from the execution cache) instead of passing silently.
    failed_marker = html_dir.parent / ".interpkit-build-failed"
    fresh = args.all or failed_marker.exists()
    if fresh and not args.all:
        print("build_book: the last build failed; re-reading every page", flush=True)
    executes = not args.no_execute
    fingerprint = source_fingerprint() if executes else ""
    if executes and drop_stale_execution_cache(html_dir.parent, fingerprint):
        print(
            "build_book: interpkit changed since the notebooks were executed; executing them again",
            flush=True,
        )
        fresh = True
    t1 = time.perf_counter()
    rc = jupyter_book(source, output, toc if args.toc or source != ROOT else None, fresh, env)
    t_build = time.perf_counter() - t1
    failures = chapter_failures(html_dir.parent) if executes else []
    if failures:
        print(
            "build_book: the book was built, but these chapters report failures (each is shown in red in its "
            "chapter):\n  " + "\n  ".join(failures),
            file=sys.stderr,
            flush=True,
        )
        rc = rc or 1
    if rc == 0:
        problems = check_assets(html_dir)
        if problems:
            print(
                "build_book: pages load scripts or styles that are not in the book:\n  "
                + "\n  ".join(problems[:50]),
                file=sys.stderr,
            )
            rc = 1
    if rc == 0:
        failed_marker.unlink(missing_ok=True)
        if executes:
            write_source_stamp(html_dir.parent, fingerprint)
    else:
        failed_marker.parent.mkdir(parents=True, exist_ok=True)
        failed_marker.write_text("see the build log\n")
    total = time.perf_counter() - t0
    print(
        f"build_book: {'ok' if rc == 0 else 'FAILED'} in {total:.1f} s (vendor {t_vendor:.1f} s, "
        f"jupyter-book {t_build:.1f} s; scripts: {stamp['resolved']}) -> {html_dir / 'index.html'}",
        flush=True,
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
