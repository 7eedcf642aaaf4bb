"""The device probe of the self-checks (issue 13): device traps are caught at their check.

Without a GPU the probe puts the inputs on PyTorch's ``meta`` device, which raises the same
device-mismatch error as CUDA when a CPU tensor meets one of its tensors; with an accelerator
it uses that. The six traps below crashed a later cell on a GPU while passing their check.
Each mistake is made from the notebook's own solution by one textual change, so the test
proves that exactly the device part is what the probe catches.
"""

from __future__ import annotations

import json
import linecache
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils import checks
from utils.checks.core import (
    DEVICE_CASE_NAME,
    FAIL,
    PASS,
    device_case,
    probe_device,
    run_check,
)

ROOT = Path(__file__).resolve().parents[1]
CHECK_CALL = re.compile(r"checks\.(\w+)\.(check_\w+)\((\w+)\)")
DEVICE_MESSAGE = "created a tensor on the CPU while the inputs are on"


def _solution_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and "### BEGIN SOLUTION" in "".join(c["source"])]


def _namespace(notebook: Path, replace: tuple[str, str] | None = None) -> dict:
    """Execute every solution cell of ``notebook`` (optionally with one textual change) in a fresh namespace."""
    ns = {"torch": torch, "nn": nn, "F": F, "math": math, "np": np}
    changed = 0
    for src in _solution_cells(notebook):
        if replace is not None and replace[0] in src:
            src = src.replace(*replace)
            changed += 1
        filename = f"<{notebook.stem} solution {changed}:{len(linecache.cache)}>"
        linecache.cache[filename] = (len(src), None, src.splitlines(keepends=True), filename)  # as IPython does
        exec(compile(src, filename, "exec"), ns)  # noqa: S102 - our own notebooks
    if replace is not None:
        assert changed == 1, f"{replace[0]!r} should occur in exactly one solution cell of {notebook.name}"
    return ns


def _checks_of(notebook: Path) -> list[tuple[str, str, str]]:
    """(topic, check, name) for every check the notebook runs on a function its solutions define
    (not on the demonstration mistakes some notebooks also check)."""
    defined = {m for src in _solution_cells(notebook) for m in re.findall(r"^(?:def|class) (\w+)", src, re.M)}
    cells = json.loads(notebook.read_text())["cells"]
    calls = [m for c in cells if c["cell_type"] == "code" for m in CHECK_CALL.findall("".join(c["source"]))]
    return list(dict.fromkeys(call for call in calls if call[2] in defined))


def _run(topic: str, check: str, fn, capsys) -> tuple[bool, str]:
    ok = getattr(getattr(checks, topic), check)(fn)
    return ok, capsys.readouterr().out


def _probe_line(out: str) -> str:
    lines = [line for line in out.splitlines() if DEVICE_CASE_NAME in line]
    assert len(lines) == 1, out
    return lines[0]


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = [(nb, *call) for nb in NOTEBOOKS for call in _checks_of(nb)]


@pytest.mark.parametrize("notebook, topic, check, name", EXERCISES,
                         ids=[f"{nb.stem[:2]}-{name}" for nb, _, _, name in EXERCISES])
def test_every_notebook_solution_passes_its_check(notebook, topic, check, name, capsys):
    """The instructor solutions pass every case, the device probe included where there is one."""
    ns = _namespace(notebook)
    ok, out = _run(topic, check, ns[name], capsys)
    assert ok, out
    probes = [line for line in out.splitlines() if DEVICE_CASE_NAME in line]
    assert all(line.lstrip().startswith(PASS) for line in probes), out


def test_every_check_of_a_tensor_function_has_a_probe():
    """Exercises on plain numbers or NumPy arrays have none; every other check runs the probe."""
    without = {"check_accuracy", "check_perceptron_fit", "check_numerical_gradient", "check_mlp_forward_backward",
               "check_count_parameters", "check_conv_output_size", "check_receptive_field", "check_gaussian_kernel", "check_conv_grad_norms",
               "check_make_schedule", "check_positional_encoding", "check_value_iteration",
               "check_toy_text_to_arrays", "check_q_learning_update", "check_epsilon_greedy", "check_causal_mask"}
    missing = []
    for path in sorted((ROOT / "utils" / "checks").glob("*.py")):
        src = path.read_text()
        for match in re.finditer(r"^def (check_\w+)\(.*?(?=^def |\Z)", src, re.S | re.M):
            name, body = match.group(1), match.group(0)
            if name not in without and "device_case(" not in body:
                missing.append(f"{path.stem}.{name}")
    assert not missing, f"checks without a device probe: {missing}"
    assert len({c for _, _, c, _ in EXERCISES} - without) >= 40


# The six traps of issue 13: (notebook, topic, check, function, text in the solution, the mistake)
TRAPS = {
    "lab 03 dropout: mask from torch.rand(x.shape)": (
        "03_training_deep_nets", "training", "check_dropout", "dropout",
        "torch.rand_like(x)", "torch.rand(x.shape)"),
    "lab 04 conv2d: output from torch.zeros(..., dtype=x.dtype)": (
        "04_cnn_filters", "convolution", "check_conv2d", "conv2d",
        "x.new_zeros(N, C_out, H_out, W_out)", "torch.zeros(N, C_out, H_out, W_out, dtype=x.dtype)"),
    "lab 06 U-Net: torch.zeros(skip.shape) without skips": (
        "06_unet_segmentation", "segmentation", "check_unet", "UNet",
        "torch.zeros_like(skip)", "torch.zeros(skip.shape)"),
    "lab 07 decode_yolo: grid from torch.arange(S)": (
        "07_yolo_detection", "detection", "check_decode_yolo", "decode_yolo",
        "torch.arange(S, device=output.device), torch.arange(S, device=output.device)",
        "torch.arange(S), torch.arange(S)"),
    "lab 10 ddpm_step: t_batch from torch.full without device": (
        "10_diffusion", "diffusion", "check_ddpm_step", "ddpm_step",
        "dtype=torch.long, device=x_t.device)", "dtype=torch.long)"),
    "lab 16 info_nce: labels from torch.arange(N)": (
        "16_self_supervised_ebm", "selfsupervised", "check_info_nce", "info_nce",
        "torch.arange(len(z1), device=z1.device)", "torch.arange(len(z1))"),
}


def _notebook(stem: str) -> Path:
    return ROOT / "notebooks" / f"{stem}.ipynb"


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_trap_is_rejected_with_the_device_message(trap, capsys):
    stem, topic, check, name, right, wrong = TRAPS[trap]
    ns = _namespace(_notebook(stem), replace=(right, wrong))
    ok, out = _run(topic, check, ns[name], capsys)
    assert not ok, out
    line = _probe_line(out)
    assert line.lstrip().startswith(FAIL) and DEVICE_MESSAGE in line, line
    assert ".device in torch.zeros/arange/full/tensor(...)" in line and ".new_zeros(...)" in line, line
    assert "(line " in line, line                         # the student's line that mixed the devices
    # only the probe fails: on the CPU the mistake computes the right numbers
    assert out.count(FAIL) == 2, out                         # the probe's line and the summary line


# Second correct implementations, each creating its tensors differently from the solution
def dropout_bernoulli(x, p, training):
    if not training or p == 0:
        return x
    return x * torch.empty_like(x).bernoulli_(1 - p) / (1 - p)


def conv2d_zeros_device(x, weight, bias=None, stride=1, padding=0):
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    xp = torch.zeros(N, C, H + 2 * padding, W + 2 * padding, dtype=x.dtype, device=x.device)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    out = torch.zeros(N, C_out, H_out, W_out, dtype=x.dtype, device=x.device)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * H_out:stride, j:j + stride * W_out:stride]
            out += torch.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def decode_yolo_to_output(output, anchors, stride):
    N, _, S, _ = output.shape
    B = anchors.shape[0]
    out = output.view(N, B, -1, S, S).permute(0, 3, 4, 1, 2)
    grid = torch.arange(S).to(output)                            # .to(tensor): its dtype and device
    bx = (grid.view(1, 1, S, 1) + out[..., 0].sigmoid()) * stride
    by = (grid.view(1, S, 1, 1) + out[..., 1].sigmoid()) * stride
    w, h = anchors[:, 0] * out[..., 2].exp(), anchors[:, 1] * out[..., 3].exp()
    boxes = torch.stack([bx - w / 2, by - h / 2, bx + w / 2, by + h / 2], -1)
    return boxes.reshape(N, -1, 4), out[..., 4].sigmoid().reshape(N, -1), out[..., 5:].softmax(-1).reshape(N, S * S * B, -1)


def ddpm_new_full(model_eps, x_t, t, schedule, noise):
    betas, alphas, alpha_bars = schedule
    eps = model_eps(x_t, x_t.new_full((x_t.shape[0],), t, dtype=torch.long))
    mean = (x_t - betas[t] / torch.sqrt(1 - alpha_bars[t]) * eps) / torch.sqrt(alphas[t])
    if t == 0:
        return mean
    return mean + torch.sqrt((1 - alpha_bars[t - 1]) / (1 - alpha_bars[t]) * betas[t]) * noise


def info_nce_moved_labels(z1, z2, temperature):
    logits = F.cosine_similarity(z1[:, None], z2[None], dim=-1) / temperature
    return F.cross_entropy(logits, torch.arange(len(z1)).to(logits.device))


def _unet_zeros_from_skip(notebook_ns):
    class UNetMultiply(notebook_ns["UNet"]):
        """The notebook's U-Net, feeding skip * 0 (same shape, dtype and device) when skips=False."""

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(F.max_pool2d(e1, 2))
            b = self.bottom(F.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(b), e2 if self.skips else e2 * 0], 1))
            d1 = self.dec1(torch.cat([self.up1(d2), e1 if self.skips else e1 * 0], 1))
            return self.head(d1)
    return UNetMultiply


SECOND = {
    "lab 03 dropout: mask from torch.rand(x.shape)": lambda ns: dropout_bernoulli,
    "lab 04 conv2d: output from torch.zeros(..., dtype=x.dtype)": lambda ns: conv2d_zeros_device,
    "lab 06 U-Net: torch.zeros(skip.shape) without skips": _unet_zeros_from_skip,
    "lab 07 decode_yolo: grid from torch.arange(S)": lambda ns: decode_yolo_to_output,
    "lab 10 ddpm_step: t_batch from torch.full without device": lambda ns: ddpm_new_full,
    "lab 16 info_nce: labels from torch.arange(N)": lambda ns: info_nce_moved_labels,
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_solution_and_a_second_correct_version_pass(trap, capsys):
    stem, topic, check, name, _, _ = TRAPS[trap]
    ns = _namespace(_notebook(stem))
    for fn in (ns[name], SECOND[trap](ns)):
        ok, out = _run(topic, check, fn, capsys)
        assert ok, out
        line = _probe_line(out)
        assert line.lstrip().startswith(PASS) and "undecided" not in line, line


# ---- the probe itself -----------------------------------------------------------------------
def test_probe_device_is_the_accelerator_or_meta(monkeypatch):
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")
    assert probe_device().type == "meta"


def test_probe_is_inconclusive_not_failing_when_values_are_needed(capsys, monkeypatch):
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")                # the meta stand-in

    def reads_values(x):
        return x * 2 if x.sum().item() > 0 else x

    assert run_check("reads values", reads_values, [device_case(torch.ones(3))])
    out = capsys.readouterr().out
    assert "undecided here" in out and PASS + " all 1 cases passed" in out


def test_probe_names_a_result_left_on_the_cpu(capsys, monkeypatch):
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")
    assert not run_check("returns cpu", lambda x: torch.zeros(x.shape), [device_case(torch.ones(3))])
    out = capsys.readouterr().out
    assert "output is on cpu while the inputs are on the 'meta' device" in out


def test_probe_names_numpy_on_a_device_tensor(capsys, monkeypatch):
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")
    assert not run_check("numpy", lambda x: torch.from_numpy(x.numpy()), [device_case(torch.ones(3))])
    assert "calls .numpy() on a tensor that is on the 'meta' device" in capsys.readouterr().out


def test_probe_catches_a_device_value_written_into_a_cpu_tensor(capsys, monkeypatch):
    """On meta, M[i] = kernel[j] into a CPU M fails with 'no data'; the guard makes it the device error."""
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")
    ns = _namespace(_notebook("06_unet_segmentation"),
                    replace=("M = kernel.new_zeros(H_out * W_out, H * W)", "M = torch.zeros(H_out * W_out, H * W, dtype=kernel.dtype)"))
    ok, out = _run("segmentation", "check_conv_matrix", ns["conv_matrix"], capsys)
    assert not ok and DEVICE_MESSAGE in _probe_line(out) and "device=kernel.device" in _probe_line(out), out
    # the advice names the function's own tensor argument
    ok, out = _run("selfsupervised", "check_info_nce", _namespace(
        _notebook("16_self_supervised_ebm"), replace=TRAPS["lab 16 info_nce: labels from torch.arange(N)"][4:])["info_nce"], capsys)
    assert "device=z1.device" in _probe_line(out)


def test_unsolved_stub_is_reported_as_not_implemented(capsys):
    def stub(x):
        raise NotImplementedError()

    assert not run_check("stub", stub, [device_case(torch.ones(3))])
    assert "not implemented yet" in capsys.readouterr().out


def test_probe_inputs_drawn_lazily_leave_the_global_rng_alone(capsys):
    state = torch.get_rng_state()
    checks.training.check_dropout(_namespace(_notebook("03_training_deep_nets"))["dropout"])
    capsys.readouterr()
    assert torch.equal(torch.get_rng_state(), state)
