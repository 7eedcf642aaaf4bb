"""The statistical tier: flattening results, building bands from a sweep, comparing."""

from __future__ import annotations

import json

import pytest
from conftest import NOTEBOOKS, ROOT

from utils import regression
from utils.regression import compare, flatten, make_baseline

RUNS = {
    0: {"checks_passed": {"a": True, "b": True}, "params": 1234, "acc": 0.90, "modes": 7,
        "pair": (0.5, 0.25), "label": "anti-diagonal"},
    1: {"checks_passed": {"a": True, "b": True}, "params": 1234, "acc": 0.94, "modes": 8,
        "pair": (0.52, 0.24), "label": "anti-diagonal"},
    2: {"checks_passed": {"a": True, "b": True}, "params": 1234, "acc": 0.92, "modes": 7,
        "pair": (0.51, 0.26), "label": "anti-diagonal"},
}


@pytest.fixture
def baseline():
    return make_baseline("99_demo.ipynb", RUNS)


def test_flatten_paths():
    flat = flatten({"a": {"b": 1, "c": [1.5, {"d": True}]}, "e": None, "f": "x"})
    assert flat == {"a.b": 1, "a.c[0]": 1.5, "a.c[1].d": True, "e": None, "f": "x"}


def test_flatten_rejects_tensors_and_odd_keys():
    with pytest.raises(TypeError, match="at 'a'"):
        flatten({"a": object()})
    with pytest.raises(TypeError, match="str, int or float keys"):
        flatten({(1, 2): 2.0})
    assert flatten({0.1: {2: 3}}) == {"0.1.2": 3}  # the keys JSON writes


def test_kinds(baseline):
    m = baseline["metrics"]
    assert m["checks_passed.a"] == {"kind": "exact", "expected": True, "values": [True] * 3}
    assert m["params"]["kind"] == "exact" and m["params"]["expected"] == 1234
    assert m["label"]["kind"] == "exact"
    assert m["acc"]["kind"] == "band"
    assert m["modes"]["kind"] == "band"
    assert baseline["seeds"] == [0, 1, 2]


def test_float_band_is_min_max_padded_by_spread_or_5_percent(baseline):
    acc = baseline["metrics"]["acc"]
    # spread 0.04 < 5 % of the median 0.92 = 0.046: pad 0.046
    assert acc["low"] == pytest.approx(0.90 - 0.046) and acc["high"] == pytest.approx(0.94 + 0.046)
    runs = {s: {"x": v} for s, v in enumerate([1.0, 2.0, 1.5])}
    x = make_baseline("n", runs)["metrics"]["x"]
    assert (x["low"], x["high"]) == (0.0, 3.0)  # pad = spread 1.0


def test_zero_floats_get_an_absolute_pad():
    x = make_baseline("n", {s: {"x": 0.0} for s in range(3)})["metrics"]["x"]
    assert (x["low"], x["high"]) == (-regression.ABS_PAD, regression.ABS_PAD) == (-1e-3, 1e-3)


def test_reband_recomputes_from_values_and_keeps_overrides(baseline):
    old = json.loads(json.dumps(baseline))
    old["metrics"]["acc"]["low"] = 0.0
    old["overrides"] = {"modes": {"kind": "band", "low": 0, "high": 9, "why": "x"}}
    new = regression.reband(old)
    assert new["metrics"] == baseline["metrics"] and new["overrides"] == old["overrides"]


def test_int_band_pads_at_least_one(baseline):
    modes = baseline["metrics"]["modes"]
    assert (modes["low"], modes["high"]) == (6, 9)


def test_identical_results_pass(baseline):
    for results in RUNS.values():
        assert compare(results, baseline) == []


def test_value_outside_band_names_metric_value_and_band(baseline):
    bad = dict(RUNS[0], acc=0.31)
    [message] = compare(bad, baseline)
    assert message.startswith("acc: 0.31 outside the band [0.854, 0.986]")
    assert "sweep: 0.9, 0.94, 0.92" in message


def test_changed_exact_values_fail(baseline):
    bad = json.loads(json.dumps(RUNS[0]))
    bad["checks_passed"]["b"] = False
    bad["params"] = 1235
    failures = compare(bad, baseline)
    assert any(f.startswith("checks_passed.b: False, expected exactly True") for f in failures)
    assert any(f.startswith("params: 1235, expected exactly 1234") for f in failures)
    assert len(failures) == 2


def test_bool_is_not_a_number(baseline):
    bad = dict(RUNS[0], params=True)
    assert compare(bad, baseline)


def test_missing_and_unknown_metrics_fail(baseline):
    bad = {k: v for k, v in RUNS[0].items() if k != "acc"}
    bad["new_metric"] = 1.0
    failures = compare(bad, baseline)
    assert "acc: missing from results (baseline has it)" in failures
    assert any(f.startswith("new_metric: not in the baseline; run `make baselines") for f in failures)


def test_nan_is_outside_every_band(baseline):
    assert compare(dict(RUNS[0], acc=float("nan")), baseline)


def test_overrides_turn_an_exact_count_into_a_band(baseline):
    base = json.loads(json.dumps(baseline))
    assert compare(dict(RUNS[0], params=1230), base)
    base["overrides"] = {"params": {"kind": "band", "low": 1200, "high": 1300, "why": "learned count"}}
    assert compare(dict(RUNS[0], params=1230), base) == []
    [message] = compare(dict(RUNS[0], params=1400), base)
    assert message.startswith("params: 1400 outside the band [1200, 1300]")
    base["overrides"]["typo"] = {"kind": "band", "low": 0, "high": 1}
    assert "typo: overridden in the baseline but not one of its metrics" in compare(RUNS[0], base)


def test_varying_strings_are_recorded_not_compared():
    base = make_baseline("n", {0: {"s": "a"}, 1: {"s": "b"}})
    assert base["metrics"]["s"]["kind"] == "varies"
    assert compare({"s": "zzz"}, base) == []


def test_sweep_runs_must_share_names_and_exist():
    with pytest.raises(ValueError, match="metric names differ"):
        make_baseline("n", {0: {"a": 1.0}, 1: {"b": 1.0}})
    with pytest.raises(ValueError, match="no `results` dict"):
        make_baseline("n", {0: None})
    with pytest.raises(ValueError, match="at least one seed"):
        make_baseline("n", {})


def test_missing_baseline_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"make baselines NB=notebooks/42_x.ipynb"):
        regression.load_baseline("42_x", tmp_path)


def test_check_command(tmp_path, capsys, monkeypatch, baseline):
    monkeypatch.setattr(regression, "load_baseline", lambda nb: baseline)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(RUNS[1]))
    bad.write_text(json.dumps(dict(RUNS[1], acc=0.5)))
    assert regression.main(["check", "notebooks/99_demo.ipynb", str(good)]) == 0
    assert regression.main(["check", "notebooks/99_demo.ipynb", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL acc: 0.5 outside the band" in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_a_baseline_from_a_sweep(path):
    base = regression.load_baseline(path.stem)
    assert base["notebook"] == path.name
    assert len(base["seeds"]) >= 5, "the sweep covers at least seeds 0-4"
    for name, spec in base["metrics"].items():
        assert len(spec["values"]) == len(base["seeds"]), name
        spec = {**spec, **base.get("overrides", {}).get(name, {})}
        if spec["kind"] == "band":
            assert spec["low"] <= min(spec["values"]) and max(spec["values"]) <= spec["high"], name
    for name, spec in base.get("overrides", {}).items():
        assert spec.get("why"), f"override of {name}: say why"


def test_baselines_belong_to_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    for path in (ROOT / "tests" / "baselines").glob("*.json"):
        assert path.stem in names, f"{path.name} has no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_seed_moves_learned_results(path):
    """DL_LABS_SEED reaches the training runs: some learned result differs between seeds."""
    base = regression.load_baseline(path.stem)
    moved = [name for name, spec in base["metrics"].items() if len(set(map(repr, spec["values"]))) > 1]
    assert moved, f"no result of {path.name} changed over seeds {base['seeds']}: hard-coded seeds?"
