from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from utils.training import batches, evaluate, fit

# ---------------------------------------------------------------------------- batches


def _xy(n: int = 10):
    return torch.arange(n, dtype=torch.float32)[:, None] * torch.ones(1, 2), torch.arange(n)


def test_batches_in_order():
    X, y = _xy(10)
    out = list(batches(X, y, 4))
    assert [len(b[1]) for b in out] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in out]), y)
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in out)


def test_batches_shuffle_covers_every_index_once():
    X, y = _xy(23)
    g = torch.Generator().manual_seed(0)
    out = list(batches(X, y, 5, shuffle=True, generator=g))
    seen = torch.cat([yb for _, yb in out])
    assert sorted(seen.tolist()) == list(range(23))
    assert seen.tolist() != list(range(23))
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in out)  # rows stay paired
    assert [len(yb) for _, yb in out] == [5, 5, 5, 5, 3]


def test_batches_shuffle_deterministic():
    X, y = _xy(50)

    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat([yb for _, yb in batches(X, y, 8, shuffle=True, generator=g)])

    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))


def test_batches_batch_larger_than_data():
    X, y = _xy(3)
    out = list(batches(X, y, 100))
    assert len(out) == 1 and torch.equal(out[0][1], y)


@pytest.mark.parametrize(("size", "error"), [(0, ValueError), (-1, ValueError),
                                             (2.0, TypeError), ("4", TypeError),
                                             (True, TypeError)])
def test_batches_bad_batch_size(size, error):
    X, y = _xy(5)
    with pytest.raises(error):
        list(batches(X, y, size))


def test_batches_length_mismatch():
    X, y = _xy(5)
    with pytest.raises(ValueError, match="same length"):
        list(batches(X, y[:4], 2))


# ---------------------------------------------------------------------------- fit


def _separable(n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    X = X + 0.5 * (2 * y[:, None] - 1).float()  # push the classes apart: margin
    return X, y


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return nn.Linear(2, 2)


def _quiet(**kwargs):
    return {"progress": False, "log_every": None, **kwargs}


def test_fit_learns_separable_problem():
    X, y = _separable()
    model = _model()
    history = fit(model, (X, y), epochs=5, lr=0.1, batch_size=32,
                  generator=torch.Generator().manual_seed(0), **_quiet())
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert set(history) == {"epoch", "train_loss", "train_acc"}
    assert len(history["train_loss"]) == len(history["train_acc"]) == 5
    assert history["train_acc"][-1] >= 0.95
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert evaluate(model, (X, y))["accuracy"] >= 0.95


def test_fit_val_history():
    X, y = _separable(240)
    model = _model()
    history = fit(model, (X[:200], y[:200]), epochs=3, lr=0.05, val_data=(X[200:], y[200:]),
                  **_quiet())
    assert set(history) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert all(len(v) == 3 for v in history.values())
    final = evaluate(model, (X[200:], y[200:]))
    assert history["val_loss"][-1] == pytest.approx(final["loss"])
    assert history["val_acc"][-1] == pytest.approx(final["accuracy"])


def test_fit_reproducible():
    X, y = _separable()

    def run():
        model = _model(seed=1)
        h = fit(model, (X, y), epochs=3, lr=0.05, batch_size=16, val_data=(X, y),
                generator=torch.Generator().manual_seed(2), **_quiet())
        return h, model.weight.detach().clone()

    (h1, w1), (h2, w2) = run(), run()
    assert h1 == h2
    assert torch.equal(w1, w2)


def test_fit_shuffle_depends_on_generator():
    X, y = _separable()
    h1 = fit(_model(), (X, y), epochs=1, batch_size=16,
             generator=torch.Generator().manual_seed(0), **_quiet())
    h2 = fit(_model(), (X, y), epochs=1, batch_size=16,
             generator=torch.Generator().manual_seed(1), **_quiet())
    assert h1["train_loss"] != h2["train_loss"]


def test_fit_silent(capsys):
    X, y = _separable(50)
    fit(_model(), (X, y), epochs=2, progress=False, log_every=None)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_fit_log_every(capsys):
    X, y = _separable(50)
    fit(_model(), (X, y), epochs=3, progress=False, log_every=2, val_data=(X, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2  # epoch 2 and the last epoch
    assert lines[0].startswith("epoch   2/3") and lines[1].startswith("epoch   3/3")
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert key in lines[1]


def test_fit_progress_bar_runs(capsys):
    X, y = _separable(50)
    history = fit(_model(), (X, y), epochs=2, progress=True, log_every=None)
    assert len(history["train_loss"]) == 2


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_fit_schedulers(scheduler):
    X, y = _separable(100)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used = []  # the learning rate of every optimizer step
    opt.register_step_pre_hook(lambda optimizer, args, kwargs: used.append(
        optimizer.param_groups[0]["lr"]))
    history = fit(model, (X, y), epochs=3, lr=0.1, batch_size=32, optimizer=opt,
                  scheduler=scheduler, **_quiet())
    assert len(history["train_loss"]) == 3
    assert len(used) == 12  # 3 epochs x 4 batches, the schedule is stepped every batch
    if scheduler == "onecycle":
        assert used[0] == pytest.approx(0.1 / 25)
        assert max(used) == pytest.approx(0.1, rel=0.05)
        assert used[-1] < 1e-5
    else:
        assert used[0] == pytest.approx(0.1)
        assert all(a >= b for a, b in zip(used, used[1:], strict=False))
        assert used[-1] < 0.01
        assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_fit_scheduler_with_dataloader():
    X, y = _separable(64)
    loader = DataLoader(TensorDataset(X, y), batch_size=16)
    history = fit(_model(), loader, epochs=2, scheduler="cosine", **_quiet())
    assert len(history["train_loss"]) == 2


def test_fit_scheduler_needs_length():
    X, y = _separable(64)

    def gen():
        yield X, y

    with pytest.raises(ValueError, match="known length"):
        fit(_model(), gen(), epochs=1, scheduler="cosine", **_quiet())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"scheduler": "step"}, ValueError),
        ({"epochs": 0}, ValueError),
        ({"epochs": 1.5}, TypeError),
        ({"lr": 0.0}, ValueError),
        ({"lr": "1e-3"}, TypeError),
        ({"batch_size": 0}, ValueError),
        ({"log_every": 0}, ValueError),
    ],
)
def test_fit_bad_args(kwargs, error):
    X, y = _separable(20)
    kwargs = {"epochs": 1, "progress": False, "log_every": None, **kwargs}
    with pytest.raises(error):
        fit(_model(), (X, y), **kwargs)


@pytest.mark.parametrize("data", [5, None, 3.0])
def test_fit_bad_train_data_type(data):
    with pytest.raises(TypeError):
        fit(_model(), data, epochs=1, **_quiet())


def test_fit_dataloader():
    X, y = _separable(96)
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=False)
    model = _model()
    history = fit(model, loader, epochs=4, lr=0.1, val_data=loader, **_quiet())
    assert set(history) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert history["train_acc"][-1] >= 0.9
    by_loader, by_tensors = evaluate(model, loader), evaluate(model, (X, y))
    assert by_loader["accuracy"] == by_tensors["accuracy"]
    assert by_loader["loss"] == pytest.approx(by_tensors["loss"], rel=1e-6)   # batch sums in another order


def test_fit_list_of_batches():
    X, y = _separable(64)
    data = [(X[:32], y[:32]), (X[32:], y[32:])]
    history = fit(_model(), data, epochs=2, **_quiet())
    assert len(history["train_loss"]) == 2


def test_fit_empty_epoch_raises():
    X, y = _separable(32)
    with pytest.raises(ValueError):
        fit(_model(), iter([(X, y)]), epochs=2, **_quiet())  # epoch 2 sees no data


def test_fit_regression_has_no_accuracy():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    history = fit(model, (X, y), epochs=20, lr=0.1, loss_fn=F.mse_loss, val_data=(X, y),
                  **_quiet())
    assert set(history) == {"epoch", "train_loss", "val_loss"}
    assert history["train_loss"][-1] < history["train_loss"][0]
    result = evaluate(model, (X, y), loss_fn=F.mse_loss)
    assert set(result) == {"loss"}
    assert result["loss"] == pytest.approx(F.mse_loss(model(X), y).item(), rel=1e-5)


def test_fit_float_labels_1d_have_no_accuracy():
    X, y = _separable(32)

    class Squeeze(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x).squeeze(1)

    history = fit(Squeeze(), (X, y.float()), epochs=1, loss_fn=F.binary_cross_entropy_with_logits,
                  **_quiet())
    assert "train_acc" not in history


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_matches_manual():
    X, y = _separable(130)
    model = _model()
    result = evaluate(model, (X, y), batch_size=32)
    assert set(result) == {"loss", "accuracy"}
    with torch.no_grad():
        out = model(X)
    assert result["loss"] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item())


def test_evaluate_uses_eval_mode_and_restores_it():
    X, y = _separable(64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    model.train()
    first = evaluate(model, (X, y))
    assert model.training and all(m.training for m in model.modules())
    second = evaluate(model, (X, y))
    assert first == second  # dropout off during evaluation
    model.eval()
    evaluate(model, (X, y))
    assert not model.training


def test_evaluate_does_not_track_gradients():
    X, y = _separable(16)
    model = _model()
    evaluate(model, (X, y))
    assert all(p.grad is None for p in model.parameters())


def test_evaluate_empty_data():
    model = _model()
    with pytest.raises(ValueError):
        evaluate(model, [])
    assert model.training


def test_evaluate_bad_data_type():
    with pytest.raises(TypeError):
        evaluate(_model(), 5)


def test_count_params_counts_all_and_trainable():
    from utils.training import count_params

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert count_params(model) == 3 * 4 + 4 + 4 * 2 + 2
    model[0].weight.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 4 + 4 * 2 + 2
    with pytest.raises(TypeError, match="model"):
        count_params([1, 2])


def test_fit_and_evaluate_accept_tuple_outputs():
    """A model returning a tuple (as a VAE does) trains with a matching loss_fn; no accuracy."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.a(x), self.b(x)

    torch.manual_seed(0)
    X = torch.randn(40, 3)
    model = TwoHeads()

    def loss_fn(out, target):
        return (out[0] - target).pow(2).mean() + out[1].pow(2).mean()

    history = fit(model, (X, X), epochs=30, lr=0.05, loss_fn=loss_fn, log_every=None, progress=False,
                  val_data=(X, X))
    assert "train_acc" not in history and "val_acc" not in history
    assert history["train_loss"][-1] < history["train_loss"][0] / 2
    assert set(evaluate(model, (X, X), loss_fn=loss_fn)) == {"loss"}
