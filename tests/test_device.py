from __future__ import annotations

import sys
import types

import pytest
import torch

from utils import device as device_mod
from utils.device import DEVICE_ENV_VAR, describe_environment, get_device

NO_ACCELERATOR = not torch.cuda.is_available() and not device_mod._mps_available(torch)


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)


@pytest.fixture
def cpu_only(monkeypatch):
    """Pretend this machine has neither CUDA nor MPS, whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda torch: False)


def test_env_var_name():
    assert DEVICE_ENV_VAR == "DL_LABS_DEVICE"


@pytest.mark.skipif(not NO_ACCELERATOR, reason="this machine has an accelerator")
def test_default_is_cpu_on_this_machine():
    device = get_device()
    assert isinstance(device, torch.device)
    assert device.type == "cpu"


def test_default_is_cpu_without_accelerator(cpu_only):
    assert get_device() == torch.device("cpu")


def test_default_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda torch: True)
    assert get_device() == torch.device("mps")


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu "])
def test_explicit_cpu(name):
    assert get_device(name) == torch.device("cpu")


def test_env_var_cpu(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert get_device() == torch.device("cpu")


def test_empty_env_var_means_automatic(monkeypatch, cpu_only):
    monkeypatch.setenv(DEVICE_ENV_VAR, "")
    assert get_device() == torch.device("cpu")


def test_argument_wins_over_env_var(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "gpu")  # invalid, but not consulted
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:", "cpu0", "", 3, 0.0])
def test_invalid_argument_names_source(bad):
    with pytest.raises(ValueError, match="argument preferred"):
        get_device(bad)


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "3"])
def test_invalid_env_var_names_source(monkeypatch, bad):
    monkeypatch.setenv(DEVICE_ENV_VAR, bad)
    with pytest.raises(ValueError, match=DEVICE_ENV_VAR):
        get_device()


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_unavailable(cpu_only, name):
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device(name)


def test_cuda_unavailable_via_env(cpu_only, monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=DEVICE_ENV_VAR):
        get_device()


def test_mps_unavailable(cpu_only):
    with pytest.raises(ValueError, match="MPS is not available"):
        get_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_really_unavailable_here():
    with pytest.raises(ValueError):
        get_device("cuda")


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA"):
        get_device("cuda:1")


@pytest.fixture
def fake_torchvision(monkeypatch):
    """describe_environment imports torchvision (about 3 s): use a stand-in module."""
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(__version__="9.9.9"))


REQUIRED_KEYS = {
    "python", "platform", "torch", "torchvision", "numpy",
    "device", "device_reason", "cpu_threads",
}


def test_describe_environment_keys_are_strings(cpu_only, fake_torchvision):
    info = describe_environment()
    assert REQUIRED_KEYS <= set(info)
    assert set(info) <= REQUIRED_KEYS | {"gpu", "cpu_capability"}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())
    assert info["device"] == "cpu"
    assert "gpu" not in info
    assert info["torch"] == torch.__version__
    assert info["torchvision"] == "9.9.9"
    assert int(info["cpu_threads"]) == torch.get_num_threads()
    assert "CPU" in info["device_reason"]


def test_describe_environment_explicit_device(fake_torchvision):
    info = describe_environment(torch.device("cpu"))
    assert info["device"] == "cpu"
    info = describe_environment("cpu")
    assert info["device"] == "cpu"


def test_describe_environment_reports_override(monkeypatch, fake_torchvision):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    info = describe_environment()
    assert info["device"] == "cpu"
    assert info["device_reason"] == f"set by {DEVICE_ENV_VAR}=cpu"


def test_describe_environment_without_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import raises ImportError
    info = describe_environment("cpu")
    assert info["torchvision"] == "not installed"


def test_describe_environment_gpu_name(monkeypatch, fake_torchvision):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Fake GPU")
    info = describe_environment(torch.device("cuda"))
    assert info["device"] == "cuda"
    assert info["gpu"] == "Fake GPU"
    assert info["device_reason"] == "cuda is available and preferred"


def test_one_cpu_thread_restores_the_count_also_after_an_error():
    import torch

    from utils.device import one_cpu_thread

    before = torch.get_num_threads()
    with one_cpu_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), one_cpu_thread():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
