"""No float64, sparse tensors or Cholesky on the lab device (issue 13).

Apple's MPS, the device ``get_device()`` picks on most student laptops, has no float64, and
sparse tensors and some linear algebra are missing or recent there. A CPU-only CI cannot run
the notebooks on MPS, so this is a static rule over every notebook code cell (instructor and
solution code) and the ``utils`` package: float64 work, sparse tensors and Cholesky stay on
the CPU. The rule reads the code's syntax tree:

- ``x.to(device)`` where ``x`` is float64 (``.double()``, ``dtype=torch.float64``, or a name
  assigned from such an expression earlier in the notebook), or a sparse tensor (``.to_sparse()``);
- a factory call with both ``device=device`` and ``dtype=torch.float64``;
- ``torch.linalg.cholesky(...)`` in a notebook that uses ``device``, without ``.cpu()`` in its argument;
- in ``utils`` (outside the checks, which build their own CPU inputs), ``.double()`` on a tensor
  that was not first brought to the CPU with ``.cpu()`` in the same expression.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ADVICE = "keep float64, sparse and Cholesky work on the CPU (Apple's MPS has no float64 and lacks some operations)"


def _is_float64(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr in ("float64", "double") and \
                isinstance(n.value, ast.Name) and n.value.id == "torch":
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "double" and not n.args:
            return True
    return False


def _is_device(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "device"


def _has_cpu_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "cpu"
               for n in ast.walk(node))


def device_findings(source: str, float64_names: set[str], uses_device: bool) -> list[tuple[int, str]]:
    """(line, what) for every rule broken in ``source``; ``float64_names`` carries across cells."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and _is_float64(node.value):
            float64_names.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
        if not isinstance(node, ast.Call):
            continue
        func, keywords = node.func, {k.arg: k.value for k in node.keywords}
        if isinstance(func, ast.Attribute) and func.attr == "to" and any(_is_device(a) for a in node.args):
            receiver = func.value
            if _is_float64(receiver) or any(_is_float64(a) for a in node.args) or \
                    (isinstance(receiver, ast.Name) and receiver.id in float64_names):
                found.append((node.lineno, "a float64 tensor or module is moved to `device`"))
            if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute) and \
                    receiver.func.attr == "to_sparse":
                found.append((node.lineno, "a sparse tensor is moved to `device`"))
        if _is_device(keywords.get("device")) and "dtype" in keywords and _is_float64(keywords["dtype"]):
            found.append((node.lineno, "a float64 tensor is created on `device`"))
        if uses_device and isinstance(func, ast.Attribute) and func.attr == "cholesky" and \
                not any(_has_cpu_call(a) for a in node.args):
            found.append((node.lineno, "Cholesky of a tensor that may be on `device` (take .cpu() first)"))
    return found


def _code_cells(notebook: Path) -> list[tuple[int, str]]:
    cells = json.loads(notebook.read_text())["cells"]
    out = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            out.append((i, "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))))
    return out


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_keeps_float64_sparse_and_cholesky_on_the_cpu(notebook):
    cells = _code_cells(notebook)
    uses_device = any("device" in src for _, src in cells)
    names: set[str] = set()
    problems = [f"{notebook.name} cell {i} line {line}: {what}: {src.splitlines()[line - 1].strip()}"
                for i, src in cells for line, what in device_findings(src, names, uses_device)]
    assert not problems, f"{ADVICE}:\n" + "\n".join(problems)


def test_utils_take_tensors_to_the_cpu_before_float64():
    problems = []
    for path in sorted((ROOT / "utils").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "double" \
                    and not _has_cpu_call(node.func.value):
                problems.append(f"{path.name} line {node.lineno}: .double() without .cpu() first")
    assert not problems, f"{ADVICE}:\n" + "\n".join(problems)


# ---- the rule catches what it should (the mistakes issue 13 found) ---------------------------
@pytest.mark.parametrize("code", [
    "x = torch.randn(3, 4, dtype=torch.float64).to(device)",
    "m = Layer(4, 4).double().to(device)",
    "E = torch.rand(5, dtype=torch.float64) * 10\ny = f(E.to(device))",
    "z = torch.zeros(3, dtype=torch.float64, device=device)",
    "A = adjacency(e, n).to_sparse().to(device)",
    "L = torch.linalg.cholesky(torch.cov(codes.T))",
])
def test_rule_catches_device_float64_sparse_and_cholesky(code):
    assert device_findings(code, set(), uses_device=True)


@pytest.mark.parametrize("code", [
    "x = torch.randn(3, 4, dtype=torch.float64)",
    "x = torch.randn(3, 4).to(device)",
    "E = torch.rand(5, dtype=torch.float64)\ny = f(E).cpu()",
    "L = torch.linalg.cholesky(torch.cov(codes.T).cpu()).to(device)",
    "A = adjacency(e, n).to(device)",
    "h = model(x.to(device)).cpu().double()",
])
def test_rule_accepts_cpu_float64_and_device_float32(code):
    assert device_findings(code, set(), uses_device=True) == []
