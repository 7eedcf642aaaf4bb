from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import utils.data.images as images_mod
from utils.data import (
    BOUNDARY,
    DATA_ENV_VAR,
    FASHION_MNIST_CLASSES,
    IGNORE_INDEX,
    SHAPE_CLASSES,
    bigram_nll,
    dataset_status,
    ensure_fashion_mnist,
    load_digits,
    load_fashion_mnist,
    load_mnist1d,
    load_names,
    make_detection_canvases,
    make_gaussian_ring,
    make_moons,
    make_rings,
    make_segmentation_scenes,
    make_spiral,
    ring_centers,
    train_val_split,
)
from utils.data.images import FASHION_MNIST_SHA256

MISSING_DIR = Path("/nonexistent/dl-labs-tests/fashion-mnist")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Never read or write the user's data folder; DL_LABS_SEED must not matter."""
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "data"))
    monkeypatch.delenv("DL_LABS_SEED", raising=False)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data folder holding verified Fashion-MNIST files (decompressed once per session)."""
    root = tmp_path_factory.mktemp("dl_labs_data")
    try:
        ensure_fashion_mnist(root, download=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    return root


@pytest.fixture(scope="session")
def mnist1d_generation(tmp_path_factory):
    """Generate MNIST-1D once per session (about 2 s) in an empty folder, recording the
    global RNG states just before and after the call."""
    folder = tmp_path_factory.mktemp("mnist1d")
    assert not (folder / "mnist1d.npz").exists()
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(11)
    np.random.seed(22)
    torch.manual_seed(33)
    before = random.getstate(), np.random.get_state(), torch.get_rng_state()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DATA_ENV_VAR, str(folder))
        ds = load_mnist1d()
        after = random.getstate(), np.random.get_state(), torch.get_rng_state()
        cached = load_mnist1d()
    random.setstate(saved[0])
    np.random.set_state(saved[1])
    torch.set_rng_state(saved[2])
    return {"folder": folder, "before": before, "after": after, "ds": ds, "cached": cached}


@pytest.fixture(scope="session")
def mnist1d_cache(mnist1d_generation) -> Path:
    """A valid MNIST-1D cache file."""
    path = mnist1d_generation["folder"] / "mnist1d.npz"
    assert path.is_file()
    return path


@pytest.fixture
def use_data_root(monkeypatch, data_root) -> Path:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_root))
    return data_root


@pytest.fixture(scope="module")
def names():
    return load_names()


# ---------------------------------------------------------------------------- digits


def test_load_digits_shapes_and_ranges():
    ds = load_digits()
    assert ds.name == "digits"
    assert ds.X_train.shape == (1437, 1, 8, 8)
    assert ds.X_test.shape == (360, 1, 8, 8)
    assert ds.X_train.dtype == ds.X_test.dtype == torch.float32
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert ds.y_train.shape == (1437,) and ds.y_test.shape == (360,)
    for X in (ds.X_train, ds.X_test):
        assert X.min() >= 0.0 and X.max() <= 1.0
    assert ds.X_train.max() == 1.0
    assert set(ds.y_train.tolist()) == set(range(10)) == set(ds.y_test.tolist())
    assert ds.num_classes == 10
    assert "1437" in repr(ds)


def test_load_digits_split_is_fixed(monkeypatch):
    first = load_digits()
    monkeypatch.setenv("DL_LABS_SEED", "17")
    torch.manual_seed(123)
    np.random.seed(456)
    random.seed(789)
    second = load_digits()
    for a, b in zip(
        (first.X_train, first.y_train, first.X_test, first.y_test),
        (second.X_train, second.y_train, second.X_test, second.y_test),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_load_digits_bad_fraction():
    with pytest.raises(ValueError):
        load_digits(0.0)
    with pytest.raises(TypeError):
        load_digits("0.2")


# ---------------------------------------------------------------------------- MNIST-1D


def test_load_mnist1d_generation_leaves_global_rngs_alone(mnist1d_generation):
    (py_before, np_before, torch_before) = mnist1d_generation["before"]
    (py_after, np_after, torch_after) = mnist1d_generation["after"]
    assert py_after == py_before
    assert np_after[0] == np_before[0]
    assert np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert torch.equal(torch_after, torch_before)


def test_load_mnist1d_shapes(mnist1d_generation):
    ds = mnist1d_generation["ds"]
    assert (mnist1d_generation["folder"] / "mnist1d.npz").is_file()
    assert ds.name == "mnist1d"
    assert ds.X_train.shape == (4000, 40) and ds.X_test.shape == (1000, 40)
    assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
    assert ds.X_train.dtype == ds.X_test.dtype == torch.float32
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))
    assert ds.num_classes == 10


def test_load_mnist1d_cached_equals_generated(mnist1d_generation):
    ds, cached = mnist1d_generation["ds"], mnist1d_generation["cached"]
    for a, b in zip(
        (ds.X_train, ds.y_train, ds.X_test, ds.y_test),
        (cached.X_train, cached.y_train, cached.X_test, cached.y_test),
        strict=True,
    ):
        assert torch.equal(a, b)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as cached:
        return {k: cached[k] for k in cached.files}


@pytest.fixture
def fake_generator(monkeypatch, mnist1d_cache):
    """Replace the (slow) MNIST-1D generation by the known-good arrays; count the calls."""
    good = _read_npz(mnist1d_cache)
    calls = []

    def generate():
        calls.append(1)
        return {k: v.copy() for k, v in good.items()}

    monkeypatch.setattr(images_mod, "_mnist1d_arrays", generate)
    return good, calls


def test_load_mnist1d_uses_valid_cache(tmp_path, monkeypatch, fake_generator, mnist1d_cache):
    good, calls = fake_generator
    monkeypatch.setenv(DATA_ENV_VAR, str(mnist1d_cache.parent))
    ds = load_mnist1d()
    assert calls == []
    assert np.array_equal(ds.X_test.numpy(), good["x_test"])


def test_load_mnist1d_stale_cache_is_regenerated(tmp_path, monkeypatch, fake_generator):
    good, calls = fake_generator
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    stale = {k: v.copy() for k, v in good.items()}
    stale["y"][0] = (stale["y"][0] + 1) % 10  # a valid file with the wrong content
    np.savez(tmp_path / "mnist1d.npz", **stale)
    ds = load_mnist1d()
    assert calls == [1]
    assert np.array_equal(ds.y_train.numpy(), good["y"])
    assert np.array_equal(_read_npz(tmp_path / "mnist1d.npz")["y"], good["y"])  # rewritten


def test_load_mnist1d_wrong_generation_raises(tmp_path, monkeypatch, mnist1d_cache):
    bad = _read_npz(mnist1d_cache)
    bad["x"] = bad["x"] + 1.0
    monkeypatch.setattr(images_mod, "_mnist1d_arrays", lambda: bad)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(RuntimeError, match="not the course's: the signals x differ beyond rounding.*mnist1d 0.0.2.post1"):
        load_mnist1d()
    assert not (tmp_path / "mnist1d.npz").exists()


def test_load_mnist1d_accepts_rounding_level_differences_only(tmp_path, monkeypatch, mnist1d_cache):
    """Another CPU or NumPy may round the generated signals differently: same labels and signals
    equal up to rounding pass; other labels are named as such."""
    from utils.data.images import mnist1d_mismatch

    ref = _read_npz(mnist1d_cache)
    rounded = {**ref, "x": (ref["x"].astype(np.float64) * (1 + 3e-7)).astype(np.float32)}
    assert images_mod._arrays_digest(rounded) != images_mod.MNIST1D_SHA256
    assert mnist1d_mismatch(rounded) is None
    monkeypatch.setattr(images_mod, "_mnist1d_arrays", lambda: rounded)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert load_mnist1d().X_train.shape == (4000, 40)
    relabelled = {**ref, "y_test": np.roll(ref["y_test"], 1)}
    assert "labels differ" in mnist1d_mismatch(relabelled)
    reordered = {**ref, "x": ref["x"][::-1].copy()}
    assert "differ beyond rounding" in mnist1d_mismatch(reordered)


@pytest.mark.parametrize("content", ["truncated", "garbage", "missing_keys"])
def test_load_mnist1d_corrupt_cache_is_regenerated(
    tmp_path, monkeypatch, fake_generator, mnist1d_cache, content
):
    good, calls = fake_generator
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    path = tmp_path / "mnist1d.npz"
    if content == "truncated":
        path.write_bytes(mnist1d_cache.read_bytes()[:1000])
    elif content == "garbage":
        path.write_bytes(b"not an npz file")
    else:
        np.savez(path, x=good["x"])
    ds = load_mnist1d()
    assert calls == [1]
    assert np.array_equal(ds.y_train.numpy(), good["y"])


# ---------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_subset(use_data_root):
    ds = load_fashion_mnist(n_train=100, n_test=50, download=False)
    assert ds.name == "fashion_mnist"
    assert ds.X_train.shape == (100, 1, 28, 28) and ds.X_test.shape == (50, 1, 28, 28)
    assert ds.y_train.shape == (100,) and ds.y_test.shape == (50,)
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for X in (ds.X_train, ds.X_test):
        assert X.min() >= 0.0 and X.max() <= 1.0
    assert ds.y_train.min() >= 0 and ds.y_train.max() <= 9
    assert ds.classes == FASHION_MNIST_CLASSES and ds.num_classes == 10
    again = load_fashion_mnist(n_train=100, n_test=50, download=False)
    assert torch.equal(ds.X_train, again.X_train) and torch.equal(ds.y_test, again.y_test)


def test_fashion_mnist_subset_independent_of_global_seed(use_data_root):
    torch.manual_seed(1)
    np.random.seed(1)
    a = load_fashion_mnist(n_train=30, n_test=20, download=False)
    torch.manual_seed(2)
    np.random.seed(2)
    b = load_fashion_mnist(n_train=30, n_test=20, download=False)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.X_test, b.X_test)


def test_fashion_mnist_full_official_order(use_data_root):
    ds = load_fashion_mnist(n_train=None, download=False)
    assert ds.X_train.shape == (60000, 1, 28, 28) and ds.X_test.shape == (10000, 1, 28, 28)
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert float(ds.X_train.min()) == 0.0 and float(ds.X_train.max()) == 1.0
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_train": 60001}, ValueError),
        ({"n_train": 0}, ValueError),
        ({"n_train": 10, "n_test": 10001}, ValueError),  # n_train given: no full load first
        ({"n_train": 10, "n_test": -5}, ValueError),
        ({"n_train": 1.5}, TypeError),
    ],
)
def test_fashion_mnist_bad_sizes(use_data_root, kwargs, error):
    with pytest.raises(error):
        load_fashion_mnist(download=False, **kwargs)


def test_ensure_fashion_mnist_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "DEBIAN_FASHION_MNIST_DIR", MISSING_DIR)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="apt-get") as info:
        ensure_fashion_mnist(download=False)
    assert "dataset-fashion-mnist" in str(info.value)
    with pytest.raises(FileNotFoundError, match="apt-get"):
        load_fashion_mnist(n_train=10, download=False)


def _copy_raw(data_root: Path, target_root: Path) -> Path:
    raw = target_root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FASHION_MNIST_SHA256:
        shutil.copyfile(data_root / "FashionMNIST" / "raw" / name, raw / name)
    return raw


def test_ensure_fashion_mnist_finds_verified_copy(tmp_path, monkeypatch, data_root):
    monkeypatch.setattr(images_mod, "DEBIAN_FASHION_MNIST_DIR", MISSING_DIR)
    raw = _copy_raw(data_root, tmp_path)
    assert ensure_fashion_mnist(tmp_path, download=False) == raw
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert ensure_fashion_mnist(download=False) == raw


def test_ensure_fashion_mnist_corrupt_file(tmp_path, monkeypatch, data_root):
    monkeypatch.setattr(images_mod, "DEBIAN_FASHION_MNIST_DIR", MISSING_DIR)
    raw = _copy_raw(data_root, tmp_path)
    victim = raw / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-100])
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(RuntimeError, match="SHA-256") as info:
        ensure_fashion_mnist(download=False)
    assert "t10k-labels-idx1-ubyte" in str(info.value)
    with pytest.raises(RuntimeError):
        load_fashion_mnist(n_train=10, n_test=10, download=False)


# ---------------------------------------------------------------------------- train_val_split


def _indexed(n: int = 100):
    return torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3), torch.arange(n)


def test_train_val_split_sizes_and_partition():
    X, y = _indexed(100)
    X_tr, y_tr, X_val, y_val = train_val_split(X, y, val_fraction=0.1)
    assert X_tr.shape == (90, 3) and X_val.shape == (10, 3)
    assert y_tr.shape == (90,) and y_val.shape == (10,)
    assert sorted(y_tr.tolist() + y_val.tolist()) == list(range(100))
    assert torch.equal(X_tr[:, 0].long(), y_tr) and torch.equal(X_val[:, 0].long(), y_val)
    assert y_val.tolist() != list(range(90, 100))  # shuffled, not the tail


def test_train_val_split_deterministic():
    X, y = _indexed(50)
    torch.manual_seed(0)
    a = train_val_split(X, y, 0.2)
    torch.manual_seed(1)
    b = train_val_split(X, y, 0.2)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    c = train_val_split(X, y, 0.2, seed=1)
    assert not torch.equal(a[3], c[3])


def test_train_val_split_at_least_one_val():
    X, y = _indexed(10)
    assert len(train_val_split(X, y, 0.01)[3]) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_train_val_split_bad_fraction(fraction):
    X, y = _indexed(10)
    with pytest.raises(ValueError):
        train_val_split(X, y, fraction)


def test_train_val_split_length_mismatch():
    X, y = _indexed(10)
    with pytest.raises(ValueError, match="same length"):
        train_val_split(X, y[:9])


# ---------------------------------------------------------------------------- names


def test_load_names_sizes_and_split(names):
    assert (len(names.train), len(names.val), len(names.test)) == (4182, 465, 516)
    train, val, test = set(names.train), set(names.val), set(names.test)
    assert len(train) == len(names.train) and len(val) == len(names.val)
    assert len(test) == len(names.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 5163
    assert "NamesData(train=4182" in repr(names)


def test_load_names_alphabet(names):
    pattern = re.compile(r"^[a-z]+$")
    assert all(pattern.match(w) for w in names.train + names.val + names.test)
    assert names.chars == (BOUNDARY,) + tuple("abcdefghijklmnopqrstuvwxyz")
    assert names.vocab_size == 27
    assert names.stoi["."] == 0 and names.stoi["a"] == 1 and names.stoi["z"] == 26


def test_load_names_is_fixed(names):
    torch.manual_seed(5)
    np.random.seed(5)
    again = load_names()
    assert again.train == names.train and again.test == names.test


def test_load_names_val_fraction():
    data = load_names(val_fraction=0.2)
    assert len(data.test) == 516
    assert len(data.val) == round(0.2 * (5163 - 516))
    with pytest.raises(ValueError):
        load_names(val_fraction=0.6)
    with pytest.raises(ValueError):
        load_names(val_fraction=0.0)


def test_encode_decode(names):
    assert names.encode("ann") == [0, 1, 14, 14, 0]
    assert names.encode("") == [0, 0]
    for word in names.test[:50]:
        ids = names.encode(word)
        assert ids[0] == ids[-1] == 0 and len(ids) == len(word) + 2
        assert names.decode(ids) == word


def test_names_tensors(names):
    x, y = names.tensors("val")
    L = max(len(w) for w in names.val) + 1
    assert x.shape == y.shape == (len(names.val), L) and x.dtype == y.dtype == torch.long
    for i in (0, 7, len(names.val) - 1):
        ids = names.encode(names.val[i])
        n = len(ids) - 1
        assert x[i, :n].tolist() == ids[:-1] and y[i, :n].tolist() == ids[1:]
        assert (x[i, n:] == 0).all() and (y[i, n:] == IGNORE_INDEX).all()
    # the number of scored predictions is what bigram_nll counts: len(name) + 1 per name
    assert int((y != IGNORE_INDEX).sum()) == sum(len(w) + 1 for w in names.val)
    # a uniform model scores log(27) per character, through cross_entropy's ignore_index
    logits = torch.zeros(*x.shape, names.vocab_size)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert float(nll) == pytest.approx(np.log(27), rel=1e-6)
    with pytest.raises(ValueError, match="split"):
        names.tensors("validation")


@pytest.mark.parametrize("bad", ["a.b", "Ann", "an n", "émile", "."])
def test_encode_rejects(names, bad):
    with pytest.raises(ValueError):
        names.encode(bad)


def test_bigram_nll_by_hand():
    chars = (".", "a", "b")
    # train "ab": bigrams .a, ab, b. ; add-one counts per row (3 columns, sum 4):
    #   row ".": [1, 2, 1]   row "a": [1, 1, 2]   row "b": [2, 1, 1]
    # test "ab": P(a|.) = P(b|a) = P(.|b) = 2/4 -> NLL per char = log 2
    assert bigram_nll(["ab"], ["ab"], alpha=1.0, chars=chars) == pytest.approx(np.log(2.0))
    # test "ba": P(b|.) = P(a|b) = P(.|a) = 1/4 -> 3 log 4; with "ab": (3 log 2 + 3 log 4) / 6
    assert bigram_nll(["ab"], ["ab", "ba"], alpha=1.0, chars=chars) == pytest.approx(
        1.5 * np.log(2.0)
    )
    # alpha = 0.5: row ".": [.5, 1.5, .5] / 2.5 -> P(a|.) = 0.6, likewise P(b|a), P(.|b)
    assert bigram_nll(["ab"], ["ab"], alpha=0.5, chars=chars) == pytest.approx(-np.log(0.6))
    # default vocabulary: boundary + letters seen in train and test
    assert bigram_nll(["ab"], ["ab"], alpha=1.0) == pytest.approx(np.log(2.0))


def test_bigram_nll_large_alpha_is_uniform():
    nll = bigram_nll(["abc", "cab"], ["bca"], alpha=1e9, chars=(".", "a", "b", "c"))
    assert nll == pytest.approx(np.log(4.0))


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_bigram_nll_bad_alpha(alpha):
    with pytest.raises(ValueError):
        bigram_nll(["ab"], ["ab"], alpha=alpha)


def test_bigram_nll_empty():
    with pytest.raises(ValueError):
        bigram_nll([], ["ab"])
    with pytest.raises(ValueError):
        bigram_nll(["ab"], [])


def test_bigram_nll_unknown_test_char():
    with pytest.raises(ValueError, match="'z'"):
        bigram_nll(["ab"], ["az"], chars=(".", "a", "b"))


def test_bigram_nll_unknown_train_char():
    with pytest.raises(ValueError):
        bigram_nll(["az"], ["ab"], chars=(".", "a", "b"))


def test_bigram_baseline(names):
    test_nll = names.bigram_baseline("test")
    val_nll = names.bigram_baseline("val")
    assert isinstance(test_nll, float) and isinstance(val_nll, float)
    assert 2.0 < test_nll < 3.3
    assert 2.0 < val_nll < 3.3
    assert test_nll < np.log(27)  # better than uniform
    assert test_nll == pytest.approx(bigram_nll(names.train, names.test, 1.0, names.chars))


@pytest.mark.parametrize("split", ["train", "Test", None])
def test_bigram_baseline_bad_split(names, split):
    with pytest.raises(ValueError):
        names.bigram_baseline(split)


# ---------------------------------------------------------------------------- toy sets


TOY = {
    "spiral": (lambda seed: make_spiral(50, 3, seed=seed), 150, 3),
    "moons": (lambda seed: make_moons(120, seed=seed), 120, 2),
    "rings": (lambda seed: make_rings(120, seed=seed), 120, 2),
    "gaussian_ring": (lambda seed: make_gaussian_ring(300, seed=seed), 300, 8),
}


@pytest.mark.parametrize("name", sorted(TOY))
def test_toy_shapes_and_determinism(name):
    make, n, n_classes = TOY[name]
    X, y = make(0)
    assert X.shape == (n, 2) and y.shape == (n,)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.isfinite(X).all()
    assert set(y.tolist()) == set(range(n_classes))
    X2, y2 = make(0)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    X3, _ = make(1)
    assert not torch.equal(X, X3)


def test_toy_independent_of_global_seed():
    torch.manual_seed(0)
    np.random.seed(0)
    a = make_spiral(seed=3)
    torch.manual_seed(1)
    np.random.seed(1)
    b = make_spiral(seed=3)
    assert torch.equal(a[0], b[0])


def test_spiral_without_noise_is_on_the_arms():
    X, y = make_spiral(20, 2, noise=0.0)
    r = X.norm(dim=1)
    assert torch.allclose(r, torch.linspace(0, 1, 20).repeat(2), atol=1e-6)
    assert torch.equal(y, torch.arange(2).repeat_interleave(20))


def test_ring_centers():
    c = ring_centers(4, radius=3.0)
    assert c.shape == (4, 2) and c.dtype == torch.float32
    expected = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])
    assert torch.allclose(c, expected, atol=1e-6)


def test_gaussian_ring_samples_near_their_mode():
    sigma = 0.05
    X, y = make_gaussian_ring(2000, n_modes=8, radius=2.0, sigma=sigma, seed=0)
    dist = (X - ring_centers(8, 2.0)[y]).norm(dim=1)
    assert dist.max() < 5 * sigma
    assert 0.5 * sigma < dist.mean() < 2 * sigma  # E|N(0, s^2 I_2)| = s sqrt(pi/2)
    assert torch.bincount(y, minlength=8).min() > 150


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: make_spiral(0), ValueError),
        (lambda: make_spiral(10, 1), ValueError),
        (lambda: make_spiral(10, noise=-0.1), ValueError),
        (lambda: make_spiral(10.0), TypeError),
        (lambda: make_spiral(True), TypeError),
        (lambda: make_moons(1), ValueError),
        (lambda: make_moons(10, noise=-1.0), ValueError),
        (lambda: make_moons("10"), TypeError),
        (lambda: make_rings(10, factor=0.0), ValueError),
        (lambda: make_rings(10, factor=1.5), ValueError),
        (lambda: make_rings(10, noise="a"), TypeError),
        (lambda: make_gaussian_ring(0), ValueError),
        (lambda: make_gaussian_ring(10, sigma=0.0), ValueError),
        (lambda: make_gaussian_ring(10, n_modes=0), ValueError),
        (lambda: ring_centers(8, radius=0.0), ValueError),
        (lambda: ring_centers(2.5), TypeError),
    ],
)
def test_toy_bad_args(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def scenes():
    return make_segmentation_scenes(8, seed=1)


@pytest.fixture(scope="module")
def canvases():
    return make_detection_canvases(8)


def test_segmentation_scenes(scenes):
    assert len(scenes) == 8
    assert scenes.images.shape == (8, 1, 64, 64) and scenes.masks.shape == (8, 64, 64)
    assert scenes.images.dtype == torch.float32 and scenes.masks.dtype == torch.int64
    assert scenes.images.min() >= 0.0 and scenes.images.max() <= 1.0
    assert set(scenes.masks.unique().tolist()) <= {0, 1, 2, 3}
    assert (scenes.masks.flatten(1) > 0).any(dim=1).all()  # every scene has a shape
    assert (scenes.masks.flatten(1) == 0).any(dim=1).all()  # and some background
    assert scenes.classes == ("background",) + SHAPE_CLASSES
    # shapes are brighter than the background they are drawn on
    for img, mask in zip(scenes.images[:, 0], scenes.masks, strict=True):
        assert img[mask > 0].mean() > img[mask == 0].mean()


def test_segmentation_scenes_seeded(scenes):
    again = make_segmentation_scenes(8, seed=1)
    assert torch.equal(again.images, scenes.images) and torch.equal(again.masks, scenes.masks)
    other = make_segmentation_scenes(8, seed=2)
    assert not torch.equal(other.masks, scenes.masks)
    assert not torch.equal(other.images, scenes.images)


def test_segmentation_scenes_options():
    s = make_segmentation_scenes(3, size=32, max_shapes=1, seed=0)
    assert s.images.shape == (3, 1, 32, 32) and s.masks.shape == (3, 32, 32)
    for mask in s.masks:  # one shape per scene: one non-zero class
        assert len(set(mask.unique().tolist()) - {0}) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"n": 0}, ValueError), ({"size": 8}, ValueError), ({"max_shapes": 0}, ValueError),
     ({"n": 2.0}, TypeError)],
)
def test_segmentation_scenes_bad_args(kwargs, error):
    with pytest.raises(error):
        make_segmentation_scenes(**kwargs)


def _overlap(a, b) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_detection_canvases(canvases):
    assert len(canvases) == 8
    assert canvases.images.shape == (8, 1, 64, 64)
    assert canvases.images.dtype == torch.float32
    assert canvases.images.min() >= 0.0 and canvases.images.max() <= 1.0
    assert len(canvases.boxes) == len(canvases.labels) == 8
    assert canvases.classes == SHAPE_CLASSES
    for img, boxes, labels in zip(
        canvases.images[:, 0], canvases.boxes, canvases.labels, strict=True
    ):
        k = len(boxes)
        assert 1 <= k <= 4
        assert boxes.shape == (k, 4) and boxes.dtype == torch.float32
        assert labels.shape == (k,) and labels.dtype == torch.int64
        assert labels.min() >= 0 and labels.max() <= 2
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes <= 64).all()
        assert torch.equal(boxes, boxes.round())  # whole pixels
        sides = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        assert (sides >= 8 - 2).all() and (sides <= 24 + 2).all()
        for i in range(k):
            for j in range(i + 1, k):
                assert not _overlap(boxes[i], boxes[j])
        mean = img.mean()
        for x1, y1, x2, y2 in boxes.long().tolist():
            assert img[y1:y2, x1:x2].mean() > mean


def test_detection_canvases_seeded(canvases):
    again = make_detection_canvases(8)
    assert torch.equal(again.images, canvases.images)
    assert all(torch.equal(a, b) for a, b in zip(again.boxes, canvases.boxes, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(again.labels, canvases.labels, strict=True))
    other = make_detection_canvases(8, seed=1)
    assert not torch.equal(other.images, canvases.images)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_size": 61.0},  # > size - 4
        {"size": 32, "max_size": 29.0},
        {"min_size": 1.0},
        {"min_size": 20.0, "max_size": 10.0},
        {"n": 0},
        {"max_objects": 0},
        {"size": 15},
    ],
)
def test_detection_canvases_bad_args(kwargs):
    with pytest.raises(ValueError):
        make_detection_canvases(**kwargs)


def test_detection_canvases_largest_allowed_size():
    c = make_detection_canvases(2, size=32, max_size=28.0, min_size=20.0, seed=3)
    assert all((b[:, 2:] <= 32).all() and (b[:, :2] >= 0).all() for b in c.boxes)


# ---------------------------------------------------------------------------- dataset_status


def test_dataset_status_all_ok(use_data_root, mnist1d_cache):
    if not (use_data_root / "mnist1d.npz").exists():
        shutil.copyfile(mnist1d_cache, use_data_root / "mnist1d.npz")
    status = dataset_status()
    assert list(status) == ["digits", "mnist1d", "fashion_mnist", "names"]
    assert all(v.startswith("ok") for v in status.values()), status
    assert "SHA-256" in status["fashion_mnist"]


def test_dataset_status_reports_missing(tmp_path, monkeypatch, mnist1d_cache):
    monkeypatch.setattr(images_mod, "DEBIAN_FASHION_MNIST_DIR", MISSING_DIR)
    shutil.copyfile(mnist1d_cache, tmp_path / "mnist1d.npz")
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    status = dataset_status(download=False)
    assert len(status) == 4
    assert status["fashion_mnist"].startswith("MISSING: ")
    assert "apt-get" in status["fashion_mnist"] and "\n" not in status["fashion_mnist"]
    assert all(status[k].startswith("ok") for k in ("digits", "mnist1d", "names"))
