"""Build the student notebooks (labs/) from the instructor notebooks (notebooks/).

Usage::

    python -m utils.labs build            # regenerate labs/ from notebooks/
    python -m utils.labs check            # exit 1 if labs/ is stale or leaks a solution
    python -m utils.labs new 17 my_topic "My topic"   # scaffold notebooks/17_my_topic.ipynb
    python -m utils.labs relink           # point every Colab badge and install at utils/_config

In notebooks/, solution code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(the nbgrader convention). In labs/ it becomes ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the same indentation; outputs are cleared; cells tagged
``remove-in-lab`` are dropped; hidden tests (``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN
TESTS``) are removed; badges point at labs/. Nothing else changes.

Grading (nbgrader). ``build`` also writes nbgrader's cell metadata into notebooks/, derived from
the markers so nothing is maintained twice: every exercise (a cell with a solution region) is a
solution cell; the self-check cell after it (``name_ok = checks.topic.check_name(name)``) is a
graded, read-only test cell (1 point unless an instructor set other points) whose hidden test
asserts the check's result, so a failing self-check fails the graded cell and grades never
disagree with the feedback the student sees; the setup cell is read-only. ``check`` fails when
notebooks/ lack that metadata or an exercise has no self-check cell.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

from . import __version__
from ._config import INSTALL_ENV, REF, REPOSITORY  # noqa: F401 (REF, INSTALL_ENV: part of the API)

__all__ = [
    "BEGIN",
    "END",
    "strip_solutions",
    "strip_hidden_tests",
    "add_grading",
    "make_lab",
    "build",
    "check",
    "new_notebook",
    "colab_url",
    "badge",
    "setup_source",
    "NOTEBOOK_PATTERN",
]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CHECK_CELL = re.compile(r"^(?P<var>\w+) = checks\.\w+\.(?P<check>check_\w+)\((?P<arg>\w+)\)$")
SETUP_IMPORT = re.compile(r"^from utils import .*\bchecks\b", flags=re.M)
NBGRADER_SCHEMA = 3
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
NOTEBOOK_PATTERN = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
REMOVE_TAG = "remove-in-lab"
_BADGE_RE = re.compile(
    r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/"
    r"(notebooks|labs)/([0-9A-Za-z_]+\.ipynb)"
)


def repo_root() -> Path:
    """The checkout that holds notebooks/ and labs/ (the parent of the utils package)."""
    return Path(__file__).resolve().parents[1]


def git_ref() -> str:
    """The git ref badges and the Colab install use: ``_config.REF``, else the tag ``v<version>``."""
    return REF or f"v{__version__}"


def colab_url(folder: str, name: str) -> str:
    """Colab URL of ``folder/name`` on the configured repository and ref."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{git_ref()}/{folder}/{name}"


def install_requirement() -> str:
    """What the setup cell installs on Colab: this release's helpers and the colab extra."""
    return f"dl-labs[colab] @ git+https://github.com/{REPOSITORY}@{git_ref()}"


def colab_install_lines() -> list[str]:
    """The Colab-only block of the setup cell: install this release's helpers unless that exact
    version is importable already (a kernel restart does not reinstall), quietly, but show pip's
    output and stop when it fails. ``$DL_LABS_INSTALL`` replaces the requirement (tests)."""
    return [
        'if "google.colab" in sys.modules:  # on Colab only: install the course helpers, once',
        "    import importlib.metadata, os, subprocess",
        f'    if next((d.version for d in importlib.metadata.distributions(name="dl-labs")), None) != "{__version__}":',
        f'        spec = os.environ.get("{INSTALL_ENV}", "{install_requirement()}")',
        '        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], capture_output=True, text=True)',
        "        if pip.returncode:",
        '            raise RuntimeError(f"pip install {spec} failed:\\n{pip.stdout[-3000:]}{pip.stderr[-3000:]}")',
    ]


_COLAB_BLOCK = re.compile(r'^if "google\.colab" in sys\.modules:.*?(?=\n\n|\Z)', flags=re.S | re.M)


def badge(folder: str, name: str) -> str:
    """Markdown "Open in Colab" badge for ``folder/name``."""
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab_url(folder, name)})"
    )


def _replace_regions(source: str, begin: str, end: str, stub: tuple[str, ...]) -> tuple[str, bool]:
    """Replace every ``begin`` ... ``end`` region (marker lines included) by ``stub`` at the
    marker's indentation; returns the text and whether a region was found.

    Raises:
        ValueError: unbalanced or nested markers.
    """
    out: list[str] = []
    inside = found = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise ValueError(f"nested '{begin}' marker")
            inside = found = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in stub)
        elif stripped == end:
            if not inside:
                raise ValueError(f"'{end}' without '{begin}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{begin}' without '{end}'")
    return "\n".join(out), found


def strip_solutions(source: str) -> str:
    """Replace every solution region of a cell's source with the stub.

    Raises:
        ValueError: unbalanced or nested markers.
    """
    return _replace_regions(source, BEGIN, END, STUB)[0]


def strip_hidden_tests(source: str) -> str:
    """Remove every hidden-test region (markers included), as nbgrader's ClearHiddenTests does.

    Raises:
        ValueError: unbalanced or nested markers.
    """
    text, found = _replace_regions(source, HIDDEN_BEGIN, HIDDEN_END, ())
    return text.rstrip("\n") if found else text


def _source(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _nbgrader(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked,
            "schema_version": NBGRADER_SCHEMA, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def add_grading(nb: dict) -> tuple[dict, list[str]]:
    """Return a copy of an instructor notebook with nbgrader metadata and hidden tests written
    from the markers (see the module docstring), and the problems found (an exercise without a
    self-check cell after it). Idempotent; an instructor's ``points`` are kept."""
    nb = copy.deepcopy(nb)
    problems: list[str] = []
    cells = nb["cells"]
    points_set = [(c.get("metadata", {}).pop("nbgrader", None) or {}).get("points") for c in cells]
    setup_done = False
    for i, cell in enumerate(cells):
        meta = cell.setdefault("metadata", {})
        if cell["cell_type"] != "code":
            continue
        source = _source(cell)
        if not setup_done and SETUP_IMPORT.search(source):
            meta["nbgrader"] = _nbgrader("setup", locked=True)
            setup_done = True
            continue
        if BEGIN not in source:
            continue
        nxt = cells[i + 1] if i + 1 < len(cells) and cells[i + 1]["cell_type"] == "code" else None
        first = strip_hidden_tests(_source(nxt)).strip() if nxt is not None else ""
        match = CHECK_CELL.match(first)
        if match is None:
            name = re.search(r"^\s*(?:def|class)\s+(\w+)", source, flags=re.M)
            meta["nbgrader"] = _nbgrader(name.group(1) if name else f"cell{i}", solution=True)
            problems.append(f"cell {i}: the exercise has no self-check cell after it "
                            "(`name_ok = checks.topic.check_name(name)`)")
            continue
        meta["nbgrader"] = _nbgrader(match["arg"], solution=True)
        nxt.setdefault("metadata", {})["nbgrader"] = _nbgrader(
            match["check"], grade=True, locked=True, points=points_set[i + 1] or 1)
        nxt["source"] = (f"{first}\n{HIDDEN_BEGIN}\n"
                         f"assert {match['var']}, \"{match['check']} failed: its report above says which "
                         f"case and why\"\n{HIDDEN_END}")
    return nb, problems


def _relink(text: str, folder: str) -> str:
    return _BADGE_RE.sub(lambda m: colab_url(folder, m.group(2)), text)


def make_lab(nb: dict) -> dict:
    """Return the student version of an instructor notebook (a new dict)."""
    lab = copy.deepcopy(nb)
    lab.get("metadata", {}).pop("widgets", None)                # saved widget state belongs to outputs
    cells = []
    for cell in lab["cells"]:
        if REMOVE_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        source = _source(cell)
        if cell["cell_type"] == "code":
            source = strip_hidden_tests(strip_solutions(source))
            cell["outputs"] = []
            cell["execution_count"] = None
            cell.get("metadata", {}).pop("execution", None)
        elif cell["cell_type"] == "markdown":
            source = _relink(source, "labs")
        cell["source"] = source
        cells.append(cell)
    lab["cells"] = cells
    return lab


def _read(path: Path) -> dict:
    import nbformat

    return nbformat.read(str(path), as_version=4)


def _dumps(nb: dict) -> str:
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb)) + "\n"


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    notebooks = sorted(p for p in (root / "notebooks").glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    return [(p, root / "labs" / p.name) for p in notebooks]


def build(root: Path | None = None) -> list[Path]:
    """Write the grading metadata into notebooks/ and regenerate labs/ from them; remove labs
    without a notebook. Returns the written paths."""
    root = root or repo_root()
    (root / "labs").mkdir(exist_ok=True)
    written = []
    pairs = _pairs(root)
    for src, dst in pairs:
        graded, _ = add_grading(_read(src))
        if src.read_text(encoding="utf-8") != _dumps(graded):
            src.write_text(_dumps(graded), encoding="utf-8")
            written.append(src)
        text = _dumps(make_lab(graded))
        if not dst.exists() or dst.read_text(encoding="utf-8") != text:
            dst.write_text(text, encoding="utf-8")
            written.append(dst)
    keep = {dst.name for _, dst in pairs}
    for stale in (root / "labs").glob("*.ipynb"):
        if stale.name not in keep:
            stale.unlink()
            written.append(stale)
    return written


def check(root: Path | None = None) -> list[str]:
    """Problems that make labs/ out of date with notebooks/ (empty list: in sync)."""
    root = root or repo_root()
    problems = []
    pairs = _pairs(root)
    for src, dst in pairs:
        try:
            nb = _read(src)
            graded, missing = add_grading(nb)
            expected = _dumps(make_lab(nb))
        except ValueError as exc:
            problems.append(f"{src.relative_to(root)}: {exc}")
            continue
        if not dst.exists():
            problems.append(f"{dst.relative_to(root)} is missing")
        elif dst.read_text(encoding="utf-8") != expected:
            problems.append(f"{dst.relative_to(root)} is stale")
        if _dumps(graded) != _dumps(nb):
            problems.append(f"{src.relative_to(root)} lacks its nbgrader metadata or hidden tests")
        problems += [f"{src.relative_to(root)}: {m}" for m in missing]
    names = {dst.name for _, dst in pairs}
    for extra in sorted((root / "labs").glob("*.ipynb")):
        if extra.name not in names:
            problems.append(f"{extra.relative_to(root)} has no notebook in notebooks/")
    return problems


def relink(root: Path | None = None) -> list[Path]:
    """Point the Colab badges (notebooks/ and README.md) and the setup cell's Colab install at
    the configured repository and ref, and the install at this version. Run it after a version
    bump or a change of ``_config``, then ``make labs``."""
    root = root or repo_root()
    changed = []
    for src, _ in _pairs(root):
        nb = _read(src)
        before = _dumps(nb)
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                cell["source"] = _relink(cell["source"], "notebooks")
            elif cell["cell_type"] == "code":
                cell["source"] = _COLAB_BLOCK.sub(
                    lambda _: "\n".join(colab_install_lines()), _source(cell))
        if _dumps(nb) != before:
            src.write_text(_dumps(nb), encoding="utf-8")
            changed.append(src)
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        new = _BADGE_RE.sub(lambda m: colab_url(m.group(1), m.group(2)), text)
        if new != text:
            readme.write_text(new, encoding="utf-8")
            changed.append(readme)
    return changed


def setup_source(extra_imports: str = "") -> str:
    """The standard setup cell: Colab-only install, grouped imports, device and seed."""
    lines = [
        "import sys",
        "",
        *colab_install_lines(),
        "",
        "import matplotlib.pyplot as plt",
        "import torch",
    ]
    if extra_imports:
        lines += extra_imports.rstrip("\n").split("\n")
    lines += [
        "",
        "from utils import checks, data, get_device, metrics, plotting, seed_everything, seed_for",
        "",
        "device = get_device()",
        "seed = seed_everything()",
        'print(f"device: {device}, seed: {seed}")',
    ]
    return "\n".join(lines)


def new_notebook(number: int, slug: str, title: str, root: Path | None = None) -> Path:
    """Scaffold ``notebooks/NN_slug.ipynb`` with the standard anatomy (see STYLE).

    Raises:
        ValueError: bad number/slug, or the notebook exists already.
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell
    from nbformat.v4 import new_notebook as nb_new

    root = root or repo_root()
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 99:
        raise ValueError(f"number: expected an int in 0..99, got {number!r}")
    if not re.fullmatch(r"[a-z0-9_]+", slug):
        raise ValueError(f"slug: expected lowercase letters, digits and '_', got {slug!r}")
    name = f"{number:02d}_{slug}.ipynb"
    path = root / "notebooks" / name
    if path.exists():
        raise ValueError(f"{path.relative_to(root)} exists already")
    cells = [
        new_markdown_cell(
            f"# Lab {number:02d} · {title}\n\n{badge('notebooks', name)}\n\n"
            "**Goal.** One sentence on what the student will be able to do.\n\n"
            "**Prerequisites:** Lab 00. **Expected time:** about 90 minutes (runs in < 60 s on a CPU).\n\n"
            "**Objectives**\n- Explain ...\n- Implement ...\n- Measure ...\n"
        ),
        new_code_cell(setup_source()),
        new_markdown_cell("## 1 · Data\n\nLoad through `utils.data`, print shapes, show one figure."),
        new_code_cell("results = {}"),
        new_markdown_cell("## 2 · First idea *≈ 15 min*\n\nTheory (<= 150 words, one idea per cell)."),
        new_code_cell(
            "# Exercise 2.1 · describe the function (≈10 min)\n"
            "def my_function(x):\n"
            '    """Shapes in, shapes out."""\n'
            f"    {BEGIN}\n    return x\n    {END}\n"
        ),
        new_code_cell("my_function_ok = checks.TOPIC.check_my_function(my_function)"),
        new_markdown_cell("## Results"),
        new_code_cell(
            "print({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})\n"
            "# assert results[...] >= threshold, results"
        ),
        new_markdown_cell(
            "**What you should see.** ...\n\n## Wrap-up\n- ...\n\n**Going further**\n1. ...\n\n"
            "**References**\n- ..."
        ),
    ]
    nb = nb_new(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.labs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="regenerate labs/ from notebooks/")
    sub.add_parser("check", help="fail if labs/ is stale")
    sub.add_parser("relink", help="point Colab badges and installs at utils/_config.py")
    sub.add_parser("ref", help="print the git ref the badges and the Colab install use")
    p_new = sub.add_parser("new", help="scaffold a notebook")
    p_new.add_argument("number", type=int)
    p_new.add_argument("slug")
    p_new.add_argument("title")
    args = parser.parse_args(argv)
    if args.command == "build":
        written = build()
        root = repo_root()
        print(f"{len(written)} file(s) updated" + "".join(f"\n  {p.relative_to(root)}" for p in written))
    elif args.command == "check":
        problems = check()
        if problems:
            print("labs/ is out of date (run `make labs`):\n  " + "\n  ".join(problems))
            return 1
        print("labs/ is in sync with notebooks/")
    elif args.command == "ref":
        print(git_ref())
    elif args.command == "relink":
        changed = relink()
        print(f"relinked {len(changed)} file(s) to {REPOSITORY}@{git_ref()}")
    else:
        try:
            path = new_notebook(args.number, args.slug, args.title)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"created {path}; write it, then `make execute NB={path.relative_to(repo_root())}` "
              "and `make labs`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
