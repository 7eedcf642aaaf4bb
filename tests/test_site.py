"""The course website (`make site`, utils/site.py): built offline with warnings as errors, then
checked as files (a page per notebook, every figure, internal links, the lab table, maths) and
in a real browser (headless Chromium driven by playwright-core: tests/site_browser.js).
The build takes about 11 s here; the browser test about 10 s."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import ROOT, missing_tool

from utils import site

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BUILD_SECONDS_LIMIT = 120  # measured: about 11 s on a 2-core machine
TEX_IN_PROSE = re.compile(r"\$[^$\s][^$]*\$|\\(?:mathbf|frac|lVert|sum|sigma|alpha|beta|theta|nabla|mathrm)\b")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not (ROOT / "tools" / "node_modules" / "mathjax").is_dir():
        missing_tool("MathJax", "make tools")
    tmp = tmp_path_factory.mktemp("site")
    out, seconds = site.build(out=tmp / "site", src=tmp / "src")
    return out, seconds


class _Page(HTMLParser):
    """Links, image sources, ids, tables and the prose text (outside code, outputs and maths)."""

    VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "source", "area", "col"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.images, self.ids, self.prose = [], [], set(), []
        self.rows, self._row, self._cell, self._skip = [], None, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag in self.VOID:
            return
        classes = (a.get("class") or "").split()
        skip = tag in ("pre", "code", "script", "style") or bool(
            {"math", "highlight", "cell_output", "output"} & set(classes))
        self._skip.append(skip or (self._skip[-1] if self._skip else False))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag not in self.VOID and self._skip:
            self._skip.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if not (self._skip and self._skip[-1]):
            self.prose.append(data)


@functools.cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _pngs(nb_path: Path) -> list[bytes]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return [base64.b64decode(o["data"]["image/png"] if isinstance(o["data"]["image/png"], str)
                             else "".join(o["data"]["image/png"]))
            for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def test_build_is_offline_warning_free_and_quick(built):
    out, seconds = built  # site.build raises on any sphinx warning (-W)
    assert (out / "index.html").is_file() and (out / "search.html").is_file()
    assert (out / "searchindex.js").stat().st_size > 10_000, "search index is (nearly) empty"
    assert seconds < BUILD_SECONDS_LIMIT, f"build took {seconds:.0f} s"


def test_one_page_per_notebook_in_lab_order(built):
    out, _ = built
    for nb in NOTEBOOKS:
        assert (out / "labs" / f"{nb.stem}.html").is_file(), nb.name
    index = (out / "index.html").read_text(encoding="utf-8")
    order = [index.find(f'href="labs/{nb.stem}.html"') for nb in NOTEBOOKS]
    assert -1 not in order and order == sorted(order), "navigation is not in lab order"
    for page in ("setup", "instructors", "contributing", "gallery"):
        assert (out / f"{page}.html").is_file(), page


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_of_the_notebook_is_an_image_on_its_page(built, nb):
    out, _ = built
    page_path = out / "labs" / f"{nb.stem}.html"
    shown = {hashlib.sha256((page_path.parent / unquote(src)).read_bytes()).hexdigest()
             for src in _parse(page_path).images if not src.startswith(("http", "data:"))}
    for i, png in enumerate(_pngs(nb)):
        assert hashlib.sha256(png).hexdigest() in shown, f"figure {i} of {nb.name} is not on its page"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_page_has_launch_buttons_for_the_setup_cells_release(built, nb):
    from utils import labs

    page = _parse(built[0] / "labs" / f"{nb.stem}.html")
    for folder in ("labs", "notebooks"):
        assert labs.colab_url(folder, nb.name) in page.links, f"no Colab button for {folder}/{nb.name}"
    downloads = [link for link in page.links if "_downloads/" in link]
    assert sorted(Path(link).name for link in downloads) == sorted([nb.name, f"{nb.stem}_solution.ipynb"])
    text = (built[0] / "labs" / f"{nb.stem}.html").read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", "launch-buttons&gt;"):
        assert marker not in text, f"{marker} shown on {nb.stem}.html"


def test_every_internal_link_resolves(built):
    out, _ = built
    pages = sorted(p for p in out.rglob("*.html") if "_static" not in p.parts)  # theme templates there
    checked = 0
    for page_path in pages:
        page = _parse(page_path)
        for link in page.links + page.images:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page_path.parent / unquote(parts.path)).resolve() if parts.path else page_path
            if target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page_path.relative_to(out)}: broken link {link}"
            if parts.fragment and target.suffix == ".html":
                assert parts.fragment in _parse(target).ids, f"{page_path.relative_to(out)}: no #{parts.fragment} in {link}"
            checked += 1
    assert checked > 500, checked


def _markdown_text(cell: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell)
    text = re.sub(r"\*\*(.+?)\*\*|(?<![\w*])\*(\S[^*]*?)\*(?![\w*])", lambda m: m.group(1) or m.group(2), text)
    text = text.replace("`", "")
    return " ".join(html.unescape(text).split())


def test_home_page_lab_table_equals_the_readmes(built):
    rows = site.lab_table((ROOT / "README.md").read_text(encoding="utf-8"))
    table = [r for r in _parse(built[0] / "index.html").rows if r and re.fullmatch(r"\d\d", r[0])]
    assert len(table) == len(rows) == len(NOTEBOOKS)
    for html_row, md in zip(table, rows, strict=True):
        number, topic, _open, seconds, headline, outcome = html_row
        assert (number, topic, seconds) == (md["number"], md["topic"], md["seconds"])
        assert headline == _markdown_text(md["headline"]), (headline, md["headline"])
        assert outcome == _markdown_text(md["outcome"]), (outcome, md["outcome"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_maths_is_rendered_as_maths_not_left_as_tex(built, nb):
    page_path = built[0] / "labs" / f"{nb.stem}.html"
    text = page_path.read_text(encoding="utf-8")
    prose = " ".join(_parse(page_path).prose)
    leftovers = [m.group(0) for m in TEX_IN_PROSE.finditer(prose)]
    assert not leftovers, f"TeX left as text on {page_path.name}: {leftovers[:3]}"
    source = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"]
                     if c["cell_type"] == "markdown")
    if "$" in source:
        assert 'class="math notranslate nohighlight"' in text, "no maths on the page"
        assert "mathjax/tex-chtml.js" in text, "MathJax is not served by the site"


def test_gallery_has_one_figure_per_lab_linking_to_it(built):
    page = _parse(built[0] / "gallery.html")
    for nb in NOTEBOOKS:
        if _pngs(nb):
            assert f"labs/{nb.stem}.html" in page.links, nb.stem
    assert len([src for src in page.images if "gallery" in src or "_images" in src]) == \
        sum(1 for nb in NOTEBOOKS if _pngs(nb))


def _browser() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def test_home_and_a_lab_page_in_a_real_browser(built):
    browser, node = _browser(), shutil.which("node")
    if browser is None or node is None:
        missing_tool("chromium or node", ".ci/sysdeps installs them")
    if not (ROOT / "tools" / "node_modules" / "playwright-core").is_dir():
        missing_tool("playwright-core", "make tools")
    out, _ = built
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shots = ROOT / "reports"
    shots.mkdir(exist_ok=True)
    try:
        res = subprocess.run([node, str(ROOT / "tests" / "site_browser.js"),
                              f"http://127.0.0.1:{server.server_address[1]}", "labs/01_perceptron.html",
                              str(shots)], env={**os.environ, "CHROMIUM": browser},
                             capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["problems"] == [], report["problems"]
    assert report["home"]["title"].startswith("Deep learning, lab by lab") and report["home"]["heading_visible"]
    assert report["home"]["lab_links"] == len(NOTEBOOKS)
    lab = report["lab"]
    assert lab["heading"].startswith("Lab 01") and lab["title"].startswith("Lab 01")
    assert lab["figure_visible"] and lab["figure_width"] > 100, lab
    assert lab["equations_rendered"] > 10 and lab["equation_visible"] and not lab["raw_dollar_math"], lab
    for name in ("site_home.png", "site_lab.png", "site_lab_figure.png", "site_lab_equation.png"):
        assert (shots / name).stat().st_size > 5_000, name
