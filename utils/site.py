"""The course website: a static site built from the executed notebooks (stored outputs, no
re-execution) with Sphinx, myst-nb and sphinx-book-theme (the Jupyter Book 1 stack).

Usage::

    python -m utils.site build [--out build/site]   # stage the sources, then sphinx-build -W

The sources are staged in ``build/site-src`` from what the repository already holds, so nothing
is written twice: the home page's lab table is parsed from the README's table; the set-up,
troubleshooting and instructor pages are the README's sections; CONTRIBUTING.md is included;
each lab page is its notebook from notebooks/ with launch buttons (student lab and solution in
Colab, at the same repository and ref as the setup cell installs; both notebooks to download)
in place of the badge; the gallery shows one figure per lab from its stored outputs. Sphinx's
configuration is ``site/conf.py``; MathJax is served from the site itself (npm ``mathjax``,
``make tools``), so pages render their maths offline.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ._config import REPOSITORY
from .labs import (
    _BADGE_RE,
    BEGIN,
    END,
    NOTEBOOK_PATTERN,
    _source,
    colab_url,
    git_ref,
    repo_root,
    strip_hidden_tests,
)

__all__ = ["lab_table", "stage", "build", "representative_figure", "main"]

_ROW = re.compile(r"^\| (\d\d) \| \[(?P<topic>[^\]]+)\]\(notebooks/(?P<file>[\w]+\.ipynb)\) \|"
                  r" (?P<open>[^|]*) \| (?P<seconds>[^|]*) \| (?P<headline>[^|]*) \| (?P<outcome>[^|]*) \|$")
_BADGE_IMAGE = re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\((https://colab\.research\.google\.com/[^)]+)\)")
_COLUMNS = ("number", "topic", "file", "seconds", "headline", "outcome")


def lab_table(readme: str) -> list[dict[str, str]]:
    """The README's lab table as rows of number, topic, file, seconds, headline and outcome.

    Raises:
        ValueError: the README has no lab table.
    """
    rows = []
    for line in readme.splitlines():
        match = _ROW.match(line.strip())
        if match:
            rows.append({"number": line.split("|")[1].strip(), "topic": match["topic"],
                         "file": match["file"], "seconds": match["seconds"].strip(),
                         "headline": match["headline"].strip(), "outcome": match["outcome"].strip()})
    if not rows:
        raise ValueError("readme: expected a lab table with rows '| NN | [topic](notebooks/NN_x.ipynb) | ...', found none")
    return rows


def _section(markdown: str, title: str) -> str:
    """A level-2 section of a markdown file, heading included."""
    parts = re.split(r"(?m)^(?=## )", markdown)
    for part in parts:
        if part.startswith(f"## {title}"):
            return part.rstrip() + "\n"
    raise ValueError(f"title: no section '## {title}' in the markdown")


def _relink_markdown(text: str, page_dir: str = "") -> str:
    """Point the repository-relative links of README/CONTRIBUTING text at the site's pages, or at
    the file on GitHub (same ref as the badges) when the site has no page for it."""
    up = "../" * page_dir.count("/") if page_dir else ""

    def fix(match: re.Match) -> str:
        label, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:|^#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        anchor = f"#{anchor}" if anchor else ""
        if path == "CONTRIBUTING.md":
            return f"[{label}]({up}contributing.md{anchor})"
        if path.startswith("notebooks/") and path.endswith(".ipynb"):
            return f"[{label}]({up}labs/{Path(path).name}{anchor})"
        return f"[{label}](https://github.com/{REPOSITORY}/blob/{git_ref()}/{path}{anchor})"

    return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", fix, text)


def representative_figure(nb: dict) -> bytes | None:
    """The figure of a lab shown in the gallery: its largest stored PNG (the richest figure;
    every lab's main experiment figure is its largest). None when the notebook has no figure."""
    best = None
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get("image/png")
            if data:
                raw = base64.b64decode(data if isinstance(data, str) else "".join(data))
                if best is None or len(raw) > len(best):
                    best = raw
    return best


def _launch_buttons(name: str) -> str:
    return (
        '<div class="launch-buttons">\n\n'
        f"[Open the student lab in Colab]({colab_url('labs', name)}){{.launch-colab-lab}}\n"
        f"[Open the solution in Colab]({colab_url('notebooks', name)}){{.launch-colab-solution}}\n"
        f"{{download}}`Download the student lab <../downloads/labs/{name}>`\n"
        f"{{download}}`Download the solution notebook <../downloads/notebooks/{Path(name).stem}_solution.ipynb>`\n\n"
        "</div>"
    )


def _lab_page(nb: dict, name: str) -> dict:
    """The notebook as a site page: the title cell's Colab badge becomes the launch buttons."""
    page = copy.deepcopy(nb)
    title = page["cells"][0]
    source = _source(title)
    source, count = _BADGE_IMAGE.subn(lambda m: _launch_buttons(name), source, count=1)
    if not count:  # no badge: put the buttons under the title line
        head, _, rest = source.partition("\n")
        source = f"{head}\n\n{_launch_buttons(name)}\n{rest}"
    title["source"] = _BADGE_RE.sub(lambda m: colab_url(m.group(1), m.group(2)), source)
    page.get("metadata", {}).pop("widgets", None)
    for cell in page["cells"][1:]:
        if cell["cell_type"] != "code":
            continue
        grading = cell.get("metadata", {}).get("nbgrader", {})
        code = strip_hidden_tests(_source(cell))
        if grading.get("solution") or grading.get("grade_id") == "setup":
            # solutions start folded (try the exercise first); the setup cell is the same in every lab
            cell["metadata"].setdefault("tags", []).append("hide-input")
            code = "\n".join(line for line in code.split("\n") if line.strip() not in (BEGIN, END))
        cell["source"] = code
    return page


def _table_markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| # | lab | open | CPU seconds | headline result (seed 0) | worst of seeds 0-4 (threshold) |",
             "|---|---|---|---:|---|---|"]
    for r in rows:
        links = (f"[student lab]({colab_url('labs', r['file'])}) · "
                 f"[solution]({colab_url('notebooks', r['file'])})")
        lines.append(f"| {r['number']} | [{r['topic']}](labs/{r['file']}) | {links} | {r['seconds']} | "
                     f"{r['headline']} | {r['outcome']} |")
    return "\n".join(lines)


def stage(root: Path | None = None, src: Path | None = None) -> Path:
    """Write the site's sources into ``src`` (default ``build/site-src``); returns it."""
    root = root or repo_root()
    src = src or root / "build" / "site-src"
    if src.exists():
        shutil.rmtree(src)
    (src / "labs").mkdir(parents=True)
    readme = (root / "README.md").read_text(encoding="utf-8")
    rows = lab_table(readme)
    notebooks = sorted(p for p in (root / "notebooks").glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    if [r["file"] for r in rows] != [p.name for p in notebooks]:
        raise ValueError("README.md: the lab table must list every notebook of notebooks/, in order; "
                         f"got {[r['file'] for r in rows]}")
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    intro = re.sub(r"(?s)\n\*\*Website:\*\*.*?(?:\n\n|$)", "\n\n", intro).strip()  # it is this site
    (src / "index.md").write_text(
        "# Deep learning, lab by lab\n\n" + _relink_markdown(intro) + "\n\n## Labs\n\n"
        + _table_markdown(rows) + "\n\n"
        "```{toctree}\n:caption: Start here\n:maxdepth: 1\n:hidden:\n\nsetup\n```\n\n"
        "```{toctree}\n:caption: Labs\n:maxdepth: 1\n:hidden:\n\n"
        + "\n".join(f"labs/{p.stem}" for p in notebooks) + "\n```\n\n"
        "```{toctree}\n:caption: Course\n:maxdepth: 1\n:hidden:\n\n"
        "gallery\ninstructors\ncontributing\n```\n", encoding="utf-8")
    (src / "setup.md").write_text(
        "# Set-up and troubleshooting\n\n" + "\n".join(
            _relink_markdown(_section(readme, t)) for t in ("Quick start", "Without make", "Troubleshooting")),
        encoding="utf-8")
    (src / "instructors.md").write_text(
        "# For instructors\n\n" + _relink_markdown(_section(readme, "For instructors")).split("\n", 1)[1],
        encoding="utf-8")
    contributing = (root / "CONTRIBUTING.md").read_text(encoding="utf-8")
    (src / "contributing.md").write_text(_relink_markdown(contributing), encoding="utf-8")
    gallery = ["# Figure gallery", "", "One figure per lab, taken from its stored outputs; "
               "each links to its lab.", "", "::::{grid} 1 1 2 2", ":gutter: 3", ""]
    (src / "_static" / "gallery").mkdir(parents=True)
    for row, path in zip(rows, notebooks, strict=True):
        nb = json.loads(path.read_text(encoding="utf-8"))
        (src / "labs" / path.name).write_text(json.dumps(_lab_page(nb, path.name), indent=1), encoding="utf-8")
        for folder, saved_as in (("notebooks", f"{path.stem}_solution.ipynb"), ("labs", path.name)):
            (src / "downloads" / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(root / folder / path.name, src / "downloads" / folder / saved_as)
        figure = representative_figure(nb)
        if figure is not None:
            (src / "_static" / "gallery" / f"{path.stem}.png").write_bytes(figure)
            gallery += [f":::{{grid-item-card}} Lab {row['number']} · {row['topic']}",
                        f":link: labs/{path.stem}", ":link-type: doc", "",
                        f"![Lab {row['number']}: {row['topic']}](_static/gallery/{path.stem}.png)",
                        ":::", ""]
    gallery.append("::::")
    (src / "gallery.md").write_text("\n".join(gallery) + "\n", encoding="utf-8")
    mathjax = root / "tools" / "node_modules" / "mathjax" / "es5"
    if not mathjax.is_dir():
        raise FileNotFoundError(f"{mathjax} is missing: run `make tools` (npm ci in tools/)")
    shutil.copy(mathjax / "tex-chtml.js", (src / "_static" / "mathjax").mkdir(parents=True) or
                src / "_static" / "mathjax" / "tex-chtml.js")
    for part in ("output/chtml/fonts/woff-v2", "input/tex/extensions"):  # fonts; TeX packages loaded on demand
        shutil.copytree(mathjax / part, src / "_static" / "mathjax" / part)
    shutil.copy(root / "site" / "conf.py", src / "conf.py")
    for name in ("site.css", "favicon.svg"):
        shutil.copy(root / "site" / name, src / "_static" / name)
    return src


def build(root: Path | None = None, out: Path | None = None, src: Path | None = None) -> tuple[Path, float]:
    """Stage the sources and build the HTML site with warnings as errors; returns the output
    folder and the seconds it took.

    Raises:
        RuntimeError: sphinx-build failed or warned (its output is in the message).
    """
    root = root or repo_root()
    out = out or root / "build" / "site"
    start = time.perf_counter()
    src = stage(root, src)
    if out.exists():
        shutil.rmtree(out)
    res = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          str(src), str(out)],
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"sphinx-build failed:\n{res.stdout[-6000:]}{res.stderr[-6000:]}")
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.site", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build the website into build/site")
    p_build.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        out, seconds = build(out=args.out)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"site built in {seconds:.0f} s: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
