from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from utils.reproducibility import (
    EXPERIMENTS_PER_SEED,
    SEED_ENV_VAR,
    get_seed,
    seed_everything,
    seed_for,
)


@pytest.fixture(autouse=True)
def _restore_global_state(monkeypatch):
    """Leave the RNGs, the deterministic flags and the environment as we found them."""
    monkeypatch.delenv(SEED_ENV_VAR, raising=False)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark, cudnn_det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_det
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


def test_sets_cublas_workspace_config():
    # the autouse fixture restores the variable afterwards
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # an existing value is kept


def _draws():
    return (
        torch.randn(5),
        np.random.rand(5),
        [random.random() for _ in range(5)],
    )


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_default_seed_is_zero():
    assert seed_everything() == 0
    assert get_seed() == 0


def test_explicit_seed_is_returned():
    assert seed_everything(7) == 7
    assert seed_everything(2**32 - 1) == 2**32 - 1


def test_env_var(monkeypatch):
    monkeypatch.setenv(SEED_ENV_VAR, "3")
    assert seed_everything() == 3
    first = _draws()
    seed_everything(3)
    assert _same(first, _draws())


def test_argument_wins_over_env(monkeypatch):
    monkeypatch.setenv(SEED_ENV_VAR, "3")
    assert seed_everything(5) == 5


def test_blank_env_var_means_default(monkeypatch):
    monkeypatch.setenv(SEED_ENV_VAR, "  ")
    assert seed_everything() == 0


@pytest.mark.parametrize("raw", ["abc", "1.5", "-1", "0x10"])
def test_bad_env_var(monkeypatch, raw):
    monkeypatch.setenv(SEED_ENV_VAR, raw)
    with pytest.raises(ValueError, match=SEED_ENV_VAR):
        seed_everything()


def test_env_var_out_of_range(monkeypatch):
    monkeypatch.setenv(SEED_ENV_VAR, str(2**32))
    with pytest.raises(ValueError, match=SEED_ENV_VAR):
        get_seed()


@pytest.mark.parametrize("bad", [1.5, True, False, "3", np.float64(2.0)])
def test_bad_argument_type(bad):
    with pytest.raises(TypeError):
        seed_everything(bad)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_argument_out_of_range(bad):
    with pytest.raises(ValueError):
        seed_everything(bad)


def test_same_seed_same_draws():
    seed_everything(123)
    first = _draws()
    torch.randn(100)  # move the generators on
    seed_everything(123)
    assert _same(first, _draws())


def test_different_seeds_differ():
    seed_everything(1)
    first = _draws()
    seed_everything(2)
    second = _draws()
    assert not torch.equal(first[0], second[0])
    assert not np.array_equal(first[1], second[1])
    assert first[2] != second[2]


def test_deterministic_settings():
    torch.use_deterministic_algorithms(False)
    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.mkldnn.deterministic
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False


def test_not_deterministic_when_asked():
    torch.use_deterministic_algorithms(False)
    assert seed_everything(0, deterministic=False) == 0
    assert not torch.are_deterministic_algorithms_enabled()


def test_seed_for_default_run_is_the_experiment_number():
    assert [seed_for(k) for k in (0, 1, 7, 123)] == [0, 1, 7, 123]


def test_seed_for_follows_the_run_seed(monkeypatch):
    monkeypatch.setenv(SEED_ENV_VAR, "3")
    assert seed_for(0) == 3 * EXPERIMENTS_PER_SEED
    assert seed_for(5) == 3 * EXPERIMENTS_PER_SEED + 5
    assert seed_for(5, seed=2) == 2 * EXPERIMENTS_PER_SEED + 5
    # distinct experiments of distinct runs never share a seed
    seeds = {seed_for(k, seed=s) for k in range(50) for s in range(5)}
    assert len(seeds) == 250


def test_seed_for_moves_the_draws(monkeypatch):
    draw = torch.randn(4, generator=torch.Generator().manual_seed(seed_for(1)))
    monkeypatch.setenv(SEED_ENV_VAR, "1")
    other = torch.randn(4, generator=torch.Generator().manual_seed(seed_for(1)))
    assert not torch.equal(draw, other)


@pytest.mark.parametrize("bad", [1.0, True, "1", None])
def test_seed_for_bad_type(bad):
    with pytest.raises(TypeError, match="k: expected an int"):
        seed_for(bad)


@pytest.mark.parametrize("bad", [-1, EXPERIMENTS_PER_SEED])
def test_seed_for_out_of_range(bad):
    with pytest.raises(ValueError, match=r"k: expected an int in \[0, 1000000\)"):
        seed_for(bad)


def test_tf32_off_for_matmul_and_cudnn():
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    seed_everything(0)
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
