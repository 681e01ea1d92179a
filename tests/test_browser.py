"""The built book in a real browser, offline.

Builds the book (execution off) from the notebooks that ``tests/test_notebooks.py`` executed in smoke
mode and left in ``.cache/executed/``, serves it on 127.0.0.1, and loads every page in headless
Debian ``chromium`` with the network cut off (every host but 127.0.0.1 goes to a dead proxy and does
not resolve). Chromium is driven over the Chrome DevTools Protocol with ``websocket-client``. Checks:
no JavaScript error, every ``<img>`` decoded, MathJax typeset every formula, the widgets render from
the vendored scripts, and no request left the machine; pages with widgets are also opened as files
(``file://``, as the README suggests). A screenshot of every chapter goes to
``.cache/screenshots/`` (or ``$INTERPKIT_SCREENSHOTS_DIR``).

Skips, saying why, when chromium or websocket-client is missing, when the executed notebooks are
missing or older than the sources (run the notebook tests first: ``pytest -m notebook``), or when the
browser scripts cannot be vendored (no npm / no registry).
"""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402

EXECUTED = ROOT / ".cache" / "executed"
TOC = Path(
    os.environ.get("INTERPKIT_BOOK_TOC") or ROOT / "_toc.yml"
)  # another toc: while chapters are missing
SCREENSHOTS = Path(os.environ.get("INTERPKIT_SCREENSHOTS_DIR") or ROOT / ".cache" / "screenshots")
PAGE_TIMEOUT = 60.0
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def find_chromium() -> str | None:
    for name in (
        os.environ.get("CHROMIUM"),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


# ------------------------------------------------------------------------------------ the browser
class CDP:
    """A minimal Chrome DevTools Protocol session over one page target."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(
            ws_url, timeout=PAGE_TIMEOUT, suppress_origin=True, enable_multithread=True
        )
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = PAGE_TIMEOUT) -> dict:
        msg_id = next(self.ids)
        self.ws.settimeout(timeout)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no answer to {method} in {timeout} s")

    def wait_event(self, method: str, timeout: float = PAGE_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"{method} did not happen in {timeout} s")

    def evaluate(self, expression: str, timeout: float = PAGE_TIMEOUT):
        res = self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "timeout": timeout * 1000,
            },
            timeout + 5,
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluation failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self):
        self.ws.close()


class Browser:
    def __init__(self, exe: str, profile: Path):
        self.profile = profile
        args = [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-default-apps",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            # the network is cut off: every host but this machine goes to a dead proxy, and no
            # name resolves; 127.0.0.1 (the book's server) is reached directly
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1;localhost",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (
                    self.proc.stderr.read().decode(errors="replace")[-2000:]
                    if self.proc.poll() is not None
                    else ""
                )
                self.stop()
                raise RuntimeError(f"chromium did not start its DevTools endpoint: {err}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def new_page(self) -> CDP:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our own browser on loopback
            target = json.load(r)
        page = CDP(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Network", "Log"):
            page.send(f"{domain}.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # chromium and its helpers (our own group)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with __import__("contextlib").suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------- the server
class _Handler(http.server.SimpleHTTPRequestHandler):
    log: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.log.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args):  # quiet
        pass


def serve(directory: Path):
    log: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"log": log})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, log


# ------------------------------------------------------------------------------------- per page
READY_JS = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const t0 = Date.now();
  // the load event can come from the page being replaced: wait for the new document
  while (!(document.documentElement && document.readyState === 'complete') && Date.now() - t0 < 20000) await sleep(50);
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  let mathjax = 'not loaded';
  if (document.querySelector('script[src*="mathjax"]')) {
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < 20000) await sleep(100);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      mathjax = await Promise.race([MathJax.startup.promise.then(() => 'typeset', e => 'failed: ' + e),
                                    sleep(30000).then(() => 'stuck')]);
    } else mathjax = 'never started';
  }
  const views = document.querySelectorAll('script[type="WIDGET_VIEW"]').length;
  let widgets = 0;
  if (views) {
    while (Date.now() - t0 < 40000) {
      widgets = document.querySelectorAll('.jupyter-widgets:not(.jupyter-widgets-error-widget)').length;
      if (widgets) break;
      await sleep(200);
    }
  }
  const math = [...document.querySelectorAll('.math')];
  return {
    title: document.title,
    mathjax,
    math: math.length,
    mathUnrendered: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mathErrors: document.querySelectorAll('mjx-merror').length,
    views, widgets,
    widgetErrors: document.querySelectorAll('.jupyter-widgets-error-widget, .widget-error').length,
    images: document.images.length,
    brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src),
    height: document.documentElement ? document.documentElement.scrollHeight : 0,
  };
})()
""".replace("WIDGET_VIEW", WIDGET_VIEW)


def _event_text(ev: dict) -> str:
    p = ev["params"]
    if ev["method"] == "Runtime.exceptionThrown":
        d = p["exceptionDetails"]
        return f"exception: {d.get('exception', {}).get('description') or d.get('text')} ({d.get('url', '')}:{d.get('lineNumber')})"
    if ev["method"] == "Runtime.consoleAPICalled":
        return "console.error: " + " ".join(
            str(a.get("value", a.get("description", ""))) for a in p["args"]
        )
    if ev["method"] == "Log.entryAdded":
        e = p["entry"]
        return f"log {e['level']}: {e.get('text')} {e.get('url', '')}"
    return json.dumps(p)[:300]


def visit(page: CDP, url: str, screenshot: Path | None = None) -> dict:
    page.events.clear()
    nav = page.send("Page.navigate", {"url": url})
    if nav.get("errorText"):
        return {
            "url": url,
            "state": {},
            "errors": [],
            "requests": [url],
            "failed": [nav["errorText"]],
        }
    page.wait_event("Page.loadEventFired")
    for attempt in range(
        3
    ):  # an evaluation that raced a document swap (context destroyed) is retried
        try:
            state = page.evaluate(READY_JS, timeout=PAGE_TIMEOUT)
            break
        except RuntimeError:
            if attempt == 2:
                raise
            time.sleep(0.5)
    time.sleep(0.2)
    page.send("Runtime.evaluate", {"expression": "0"})  # drain late events
    errors, requests, failed = [], [], []
    for ev in page.events:
        m, p = ev["method"], ev["params"]
        if (
            m == "Runtime.exceptionThrown"
            or (m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"))
            or (m == "Log.entryAdded" and p["entry"]["level"] == "error")
        ):
            errors.append(_event_text(ev))
        elif m == "Network.requestWillBeSent":
            requests.append(p["request"]["url"])
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            failed.append(f"{p.get('errorText')} (request {p['requestId']})")
        elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
            failed.append(f"HTTP {p['response']['status']} {p['response']['url']}")
    if screenshot is not None:
        height = min(int(state["height"] or 900), 4000)
        shot = page.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
            },
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    return {"url": url, "state": state, "errors": errors, "requests": requests, "failed": failed}


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    pytest.importorskip(
        "websocket", reason="websocket-client is not installed (pip install websocket-client)"
    )
    toc_notebooks = [f for f in build_book.toc_files(TOC) if f.startswith("notebooks/")]
    missing = [
        Path(f).name for f in toc_notebooks if not (EXECUTED / f"{Path(f).name}.ipynb").is_file()
    ]
    if missing:
        pytest.skip(
            f"no executed copy in .cache/executed of {missing}: the notebook tests "
            "(tests/test_notebooks.py, `pytest -m notebook`) leave them there when they pass"
        )
    stale = [
        Path(f).name
        for f in toc_notebooks
        if (EXECUTED / f"{Path(f).name}.ipynb").stat().st_mtime
        < (ROOT / f"{f}.ipynb").stat().st_mtime
    ]
    if stale:
        pytest.skip(
            f"executed copies older than the notebooks: {stale}; run the notebook tests again"
        )
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "build_book.py"),
            "--no-execute",
            "--notebooks-from",
            str(EXECUTED),
            "--output",
            str(out),
            "--toc",
            str(TOC),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode == build_book.EXIT_VENDOR:
        pytest.skip(f"the browser scripts could not be vendored: {proc.stderr.strip()[-600:]}")
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return exe, out / "_build" / "html"


@pytest.fixture(scope="module")
def visits(built_book, tmp_path_factory):
    exe, html = built_book
    server, log = serve(html)
    browser = Browser(exe, tmp_path_factory.mktemp("chromium-profile"))
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        page = browser.new_page()
        probe = visit(page, "http://example.com/")  # must fail: the network is cut off
        pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html"))
        results = {}
        for rel in pages:
            if rel == "index.html" or rel.startswith("_static/"):  # a redirect; theme templates
                continue
            chapter = rel.startswith(("notebooks/", "book/"))
            shot = (
                SCREENSHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")
                if chapter
                else None
            )
            results[rel] = visit(page, base + rel, shot)
        # the README's way: open the HTML files directly (file://), no server
        from_files = {
            rel: visit(page, (html / rel).as_uri())
            for rel, v in results.items()
            if v["state"]["views"]
        }
        page.close()
    finally:
        browser.stop()
        server.shutdown()
    return {
        "base": base,
        "pages": results,
        "from_files": from_files,
        "server_log": list(log),
        "probe": probe,
        "index": (html / "index.html").read_text(),
    }


# ---------------------------------------------------------------------------------------- tests
def _report(bad: dict) -> str:
    return "\n".join(f"{page}: {items}" for page, items in bad.items())


def test_network_is_cut_off_for_the_browser(visits):
    probe = visits["probe"]
    assert probe["failed"] and not (probe["state"].get("title") or "").lower().startswith(
        "example"
    ), f"http://example.com/ loaded: the browser reaches the network ({probe})"


def test_every_page_loads_without_javascript_errors(visits):
    assert len(visits["pages"]) >= 5
    bad = {p: v["errors"] for p, v in visits["pages"].items() if v["errors"]}
    assert not bad, f"JavaScript errors:\n{_report(bad)}"


def test_every_request_stays_on_this_machine_and_succeeds(visits):
    base = visits["base"]
    remote = {
        p: sorted(
            {u for u in v["requests"] if not u.startswith((base, "data:", "blob:", "about:"))}
        )
        for p, v in visits["pages"].items()
    }
    remote = {p: u for p, u in remote.items() if u}
    assert not remote, f"requests to other hosts:\n{_report(remote)}"
    failed = {p: v["failed"] for p, v in visits["pages"].items() if v["failed"]}
    assert not failed, f"failed requests:\n{_report(failed)}"
    not_found = sorted(
        {path for path, code in visits["server_log"] if code >= 400 and "favicon" not in path}
    )
    assert not not_found, f"the book's server answered errors for {not_found}"


def test_every_image_is_decoded(visits):
    bad = {
        p: v["state"]["brokenImages"]
        for p, v in visits["pages"].items()
        if v["state"]["brokenImages"]
    }
    assert not bad, f"images that did not decode:\n{_report(bad)}"
    assert sum(v["state"]["images"] for v in visits["pages"].values()) > 0, "no page has an image"


def test_mathjax_typesets_every_formula(visits):
    bad = {}
    for p, v in visits["pages"].items():
        s = v["state"]
        if s["math"] and (s["mathjax"] != "typeset" or s["mathUnrendered"] or s["mathErrors"]):
            bad[p] = {k: s[k] for k in ("mathjax", "math", "mathUnrendered", "mathErrors")}
    assert not bad, f"maths not typeset:\n{_report(bad)}"
    assert any(v["state"]["math"] for v in visits["pages"].values()), "no page has maths to check"


def test_widgets_render_from_the_vendored_scripts(visits):
    with_views = {p: v for p, v in visits["pages"].items() if v["state"]["views"]}
    assert with_views, (
        "no page carries widget views (the executed notebooks should store widget state)"
    )
    bad = {
        p: {k: v["state"][k] for k in ("views", "widgets", "widgetErrors")}
        for p, v in with_views.items()
        if not v["state"]["widgets"] or v["state"]["widgetErrors"]
    }
    assert not bad, f"widgets that did not render:\n{_report(bad)}"
    served = {path.split("?")[0] for path, code in visits["server_log"] if code == 200}
    for script in (
        "/_static/vendor/require.js",
        "/_static/vendor/embed-amd.js",
        "/_static/interpkit-widgets.js",
    ):
        assert script in served, f"{script} was never loaded from the book"


def test_pages_opened_as_files_render_widgets_and_maths(visits):
    assert visits["from_files"], "no page with widgets to open from disk"
    bad = {}
    for p, v in visits["from_files"].items():
        s = v["state"]
        problems = v["errors"] + v["failed"] + s["brokenImages"] + s["mathUnrendered"]
        if not s["widgets"] or (s["math"] and s["mathjax"] != "typeset") or problems:
            bad[p] = {"widgets": s["widgets"], "mathjax": s["mathjax"], "problems": problems}
    assert not bad, f"pages opened from disk (file://):\n{_report(bad)}"
    remote = {
        p: [u for u in v["requests"] if not u.startswith(("file:", "data:", "blob:", "about:"))]
        for p, v in visits["from_files"].items()
    }
    assert not any(remote.values()), f"requests that left the machine: {remote}"


def test_root_redirects_to_the_introduction(visits):
    assert "book/intro.html" in visits["index"]


def test_a_screenshot_of_every_chapter(visits):
    chapters = [p for p in visits["pages"] if p.startswith("notebooks/")]
    assert chapters
    for p in chapters:
        shot = SCREENSHOTS / (p.replace("/", "__").removesuffix(".html") + ".png")
        assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
