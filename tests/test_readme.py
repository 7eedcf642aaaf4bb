"""The README's commands are the ones the Makefile runs."""

from __future__ import annotations

import re

from conftest import ROOT


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|console)?\n(.*?)```", markdown, re.S)


def _makefile_targets(makefile: str) -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))


def test_quick_start_is_exactly_two_make_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [ln.strip() for b in _blocks(section) for ln in b.splitlines() if ln.strip()
                and not ln.strip().startswith("#")]
    assert "make lab" in commands and "make test" in commands
    assert [c for c in commands if c.startswith("make")] == ["make lab", "make test"]


def test_every_make_command_in_the_readme_is_a_target():
    readme = (ROOT / "README.md").read_text()
    targets = _makefile_targets((ROOT / "Makefile").read_text())
    mentioned = set(re.findall(r"`?make ([a-z][a-z-]*)", readme))
    assert mentioned, "the README shows no make command"
    assert mentioned <= targets, f"README mentions unknown targets: {sorted(mentioned - targets)}"


def test_plain_pip_commands_match_the_makefile():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text().replace("$(PY)", "python")
    for var in ("NBVAL_MODE", "NBVAL_ARGS"):
        value = re.search(rf"^{var} :?\??= (.*)$", makefile, re.M).group(1)
        makefile = makefile.replace(f"$({var})", value)
    section = readme.split("## Without make", 1)[1].split("\n## ", 1)[0]
    commands = [ln.strip() for b in _blocks(section) for ln in b.splitlines()
                if ln.strip().startswith("python -m")]
    assert len(commands) >= 4, commands
    for command in commands:
        assert command in makefile, f"README command not run by the Makefile: {command}"


def test_every_notebook_has_a_row_in_the_lab_table():
    readme = (ROOT / "README.md").read_text()
    rows = [ln for ln in readme.splitlines() if re.match(r"^\| \d\d \|", ln)]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        row = [r for r in rows if r.startswith(f"| {path.name[:2]} |")]
        assert row, f"no README table row for {path.name}"
        assert f"notebooks/{path.name}" in row[0] and f"labs/{path.name}" in row[0]
        assert re.search(r"\| \d+ \|", row[0]), f"no measured seconds for {path.name}"


def test_python_version_agrees_with_the_package_and_the_pins():
    readme = (ROOT / "README.md").read_text()
    stated = re.search(r"Python (3\.\d+) or newer", readme)
    assert stated, "the README states no minimum Python version"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={stated.group(1)}"' in pyproject
    assert f"sys.version_info < ({stated.group(1).replace('.', ', ')})" in (ROOT / "Makefile").read_text()


# Each lab's headline learning outcome: (results key, comparison, threshold asserted in the
# notebook). The README's lab table shows the worst value over the seed sweep against it.
HEADLINES = {
    "00_setup": ("smoke_test_acc", ">=", 0.90),
    "01_perceptron": ("digits_softmax_test_acc", ">=", 0.93),
    "02_mlp_backprop": ("mnist1d_mlp_acc", ">=", 0.61),
    "03_training_deep_nets": ("mc_dropout_std_ratio_far_vs_near", ">", 1.3),
    "04_cnn_filters": ("fashion_cnn_test_acc", ">=", 0.89),
    "05_resnet": ("fashion_small_resnet_acc", ">=", 0.80),
    "06_unet_segmentation": ("unet_mean_iou_objects", ">=", 0.85),
    "07_yolo_detection": ("map50", ">=", 0.80),
    "08_autoencoders_vae": ("mini_fid.VAE, z ~ N(0, I).score", "<=", 0.25),
    "09_gan": ("ring_non_saturating.modes", ">=", 6),
    "10_diffusion": ("moons_mmd2_normalised", "<=", 0.4),
    "11_rnn_lstm": ("names_improvement", ">=", 0.10),
    "12_transformers": ("reversal_exact_match", ">=", 0.95),
    "13_gnn": ("karate_gcn_acc", ">=", 0.9),
    "14_q_learning": ("dqn_best_ma20", ">=", 150),
    "15_visualization_adversarial": ("clean_acc_attack_set", ">=", 0.87),
    "16_self_supervised_ebm": ("probe_gain_over_random", ">=", 0.15),
    "17_vision_transformers": ("vit_large_test_acc", ">=", 0.75),
    "18_likelihood_models": ("pixelcnn_gain_bpd", ">=", 0.10),
    "19_policy_gradients_control": ("cartpole_median_best_ma20", ">=", 150),
}


def worst_of_sweep(stem: str) -> str:
    """'<worst value over the sweep> (<comparison> <threshold>)' from tests/baselines/<stem>.json."""
    from utils.regression import load_baseline

    key, op, threshold = HEADLINES[stem]
    metrics = load_baseline(stem)["metrics"]
    values = [v for name, spec in metrics.items()
              if name == key or name.startswith((key + ".", key + "["))
              for v in spec["values"]]
    assert values, f"{stem}: {key} is not in its baseline"
    worst = min(values) if op.startswith(">") else max(values)
    return f"{worst:g} ({op} {threshold:g})"


def test_lab_table_shows_the_worst_seed_against_the_threshold():
    readme = (ROOT / "README.md").read_text()
    header = [ln for ln in readme.splitlines() if ln.startswith("| # |")]
    assert header and "worst of seeds 0-4" in header[0]
    rows = {ln[2:4]: ln for ln in readme.splitlines() if re.match(r"^\| \d\d \|", ln)}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        stem = path.stem
        assert stem in HEADLINES, f"{stem}: add its headline outcome to HEADLINES"
        key, op, threshold = HEADLINES[stem]
        cell = worst_of_sweep(stem)
        assert f"| {key}: {cell} |" in rows[stem[:2]], f"{stem}: README should show | {key}: {cell} |"
        worst = float(cell.split()[0])
        assert eval(f"{worst} {op} {threshold}"), f"{stem}: the worst seed misses the threshold"


def test_title_cell_runtimes_match_the_readme_table():
    """A lab's title cell says "runs in about N s"; N is the README's measured seconds for it."""
    import json

    rows = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"^\| (\d\d) \| .*? \| .*? \| (\d+) \|", (ROOT / "README.md").read_text(), re.M)}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        title = "".join(json.loads(path.read_text())["cells"][0]["source"])
        m = re.search(r"runs in about (\d+) s", title)
        if m is None:
            assert "runs in" not in title, f"{path.name}: say 'runs in about N s' with the README's N"
            continue
        assert int(m.group(1)) == rows[path.name[:2]], (
            f"{path.name}: title says {m.group(1)} s, README table {rows[path.name[:2]]} s")
