"""Checks for the training lab (03): optimizers, batch norm and dropout."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, _describe, compare_values, device_case, run_check, tiered, to_device

__all__ = ["check_sgd_momentum_step", "check_adam_step", "check_batchnorm_forward", "check_dropout",
           "check_batchnorm_backward", "reference_batchnorm_backward"]


def _param_and_grads(seed: int, shape=(4, 3), steps: int = 5):
    import torch

    g = torch.Generator().manual_seed(seed)
    p0 = torch.randn(shape, generator=g, dtype=torch.float64)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(steps)]
    return p0, grads


def _optimizer_case(name, make_torch_opt, run_student, seed, shape=(4, 3), steps=5, diagnose=None) -> Case:
    """``diagnose(p0, grads[:t], p_after_t) -> str | None`` may name the mistake behind a mismatch at step t."""
    import torch

    def test(fn):
        p0, grads = _param_and_grads(seed, shape, steps)
        ref = p0.clone().requires_grad_(True)
        opt = make_torch_opt([ref])
        mine = p0.clone()
        state = run_student.init(mine)
        for t, grad in enumerate(grads, 1):
            ref.grad = grad.clone()
            opt.step()
            before = mine.clone()
            state, msg = run_student.step(fn, mine, grad.clone(), state)
            if msg:
                return f"step {t}: {msg}"
            if torch.equal(before, mine) and not torch.equal(before, ref.detach()):
                return (f"step {t}: p did not change: update it in place (p.sub_(...) or p -= ...); "
                        "p = p - ... only rebinds a local name")
            msg = compare_values(ref.detach(), mine, atol=1e-10, rtol=1e-9, path=f"p after step {t}")
            if msg:
                why = diagnose(p0, grads[:t], mine) if diagnose else None
                return f"{msg} ({why})" if why else msg
        return None

    return Case(name, test=test)


def _dampened_sgd(lr, momentum, nesterov):
    """Diagnose the textbook EMA momentum buf = mu * buf + (1 - mu) * grad (buffer started at 0 or at grad)."""
    def diagnose(p0, grads, got):
        for first_is_grad in (False, True):
            p, buf = p0.clone(), None
            for grad in grads:
                if buf is None:
                    buf = grad.clone() if first_is_grad else (1 - momentum) * grad
                else:
                    buf = momentum * buf + (1 - momentum) * grad
                p -= lr * (grad + momentum * buf if nesterov else buf)
            if compare_values(p, got, atol=1e-10, rtol=1e-9) is None:
                return ("this is momentum with (1 - momentum) dampening, buf = momentum * buf + (1 - momentum) * "
                        "grad: an average of past gradients, so its steps are only (1 - momentum) times as long as "
                        "PyTorch's, whose buffer is a sum with no such factor")
        return None
    return diagnose


class _SGDRunner:
    def __init__(self, lr, momentum, nesterov):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov

    def init(self, p):
        return None

    def step(self, fn, p, grad, buf):
        out = fn(p, grad, buf, self.lr, self.momentum, nesterov=self.nesterov)
        if out is None:
            return None, "return the momentum buffer (it is passed back in as buf next step)"
        return out, None


class _AdamRunner:
    def __init__(self, lr, betas, eps):
        self.lr, self.betas, self.eps = lr, betas, eps

    def init(self, p):
        import torch

        return {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def step(self, fn, p, grad, state):
        before = state["step"]
        fn(p, grad, state, self.lr, betas=self.betas, eps=self.eps)
        if state.get("step") != before + 1:
            return state, f"state['step'] should go from {before} to {before + 1}, got {state.get('step')!r}"
        return state, None


@tiered
def check_sgd_momentum_step(sgd_momentum_step: Callable) -> bool:
    """Check ``sgd_momentum_step(p, grad, buf, lr, momentum, nesterov=False)`` against torch.optim.SGD."""
    import torch

    cases = []
    for name, lr, mom, nest, seed in [
        ("momentum 0.9, 5 steps", 0.1, 0.9, False, 0),
        ("momentum 0.5, lr 0.01", 0.01, 0.5, False, 1),
        ("Nesterov, momentum 0.9", 0.1, 0.9, True, 2),
        ("momentum 0 (plain SGD)", 0.3, 0.0, False, 3),
    ]:
        cases.append(_optimizer_case(
            name, lambda params, lr=lr, mom=mom, nest=nest: torch.optim.SGD(params, lr=lr, momentum=mom, nesterov=nest),
            _SGDRunner(lr, mom, nest), seed, diagnose=_dampened_sgd(lr, mom, nest) if mom else None))

    def on_device(fn, device):
        p0, grads = _param_and_grads(5, steps=2)
        p, buf = to_device(p0, device), None
        for grad in grads:
            buf = fn(p, to_device(grad, device), buf, 0.1, 0.9, nesterov=True)
        return p, buf

    cases.append(device_case(run=on_device, name="p"))
    return run_check(
        "sgd_momentum_step(p, grad, buf, lr, momentum, nesterov)", sgd_momentum_step, cases,
        hint="the momentum buffer accumulates past gradients (PyTorch's convention, no dampening); the step follows the buffer, or looks ahead with Nesterov; update p in place",
        solution="PyTorch's convention: buf = grad on the first step (buf is None), afterwards "
             "buf = momentum * buf + grad (no (1 - momentum) factor); the step direction is buf, "
             "or grad + momentum * buf with Nesterov; then p -= lr * direction, in place",
    )


@tiered
def check_adam_step(adam_step: Callable) -> bool:
    """Check ``adam_step(p, grad, state, lr, betas, eps)`` against torch.optim.Adam over several steps."""
    import torch

    cases = []
    for name, lr, betas, eps, seed, steps in [
        ("defaults, 5 steps", 1e-2, (0.9, 0.999), 1e-8, 0, 5),
        ("betas (0.8, 0.99), lr 0.1", 0.1, (0.8, 0.99), 1e-8, 1, 5),
        ("large eps 0.1 (eps outside the square root)", 1e-2, (0.9, 0.999), 0.1, 2, 4),
        ("first step only (bias correction matters most)", 1e-3, (0.9, 0.999), 1e-8, 3, 1),
        ("20 steps", 1e-2, (0.9, 0.999), 1e-8, 4, 20),
    ]:
        cases.append(_optimizer_case(
            name, lambda params, lr=lr, betas=betas, eps=eps: torch.optim.Adam(params, lr=lr, betas=betas, eps=eps),
            _AdamRunner(lr, betas, eps), seed, steps=steps))

    def on_device(fn, device):
        p0, grads = _param_and_grads(5, steps=2)
        p = to_device(p0, device)
        state = {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        for grad in grads:
            fn(p, to_device(grad, device), state, 1e-2)
        return p, state

    cases.append(device_case(run=on_device, name="p"))
    return run_check(
        "adam_step(p, grad, state, lr, betas, eps)", adam_step, cases,
        hint='moving averages of the gradient and of its square, each corrected for its bias towards zero at early steps, then a step scaled per coordinate',
        solution="increment state['step'] first; update both moving averages in place; divide each "
             "by (1 - beta ** step) (bias correction); p -= lr * m_hat / (sqrt(v_hat) + eps)",
    )


@tiered
def check_batchnorm_forward(batchnorm_forward: Callable) -> bool:
    """Check ``batchnorm_forward(...)`` against ``torch.nn.functional.batch_norm``, train and eval."""
    import torch
    import torch.nn.functional as F

    def case(name, shape, training, momentum, eps, seed):
        def test(fn):
            g = torch.Generator().manual_seed(seed)
            C = shape[1]
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1
            gamma = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
            beta = torch.randn(C, generator=g, dtype=torch.float64)
            rm = torch.randn(C, generator=g, dtype=torch.float64)
            rv = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
            ref_rm, ref_rv = rm.clone(), rv.clone()
            y_ref = F.batch_norm(x, ref_rm, ref_rv, gamma, beta, training=training, momentum=momentum, eps=eps)
            passed = {"x": x.clone(), "running_mean": rm.clone(), "running_var": rv.clone()}
            out = fn(passed["x"], gamma.clone(), beta.clone(), passed["running_mean"], passed["running_var"],
                     training, momentum, eps)
            if not isinstance(out, tuple) or len(out) != 3:
                return "expected a tuple (y, new_running_mean, new_running_var)"
            for label, e, got in (("y", y_ref, out[0]), ("new_running_mean", ref_rm, out[1]),
                                  ("new_running_var", ref_rv, out[2])):
                msg = compare_values(e, got, atol=1e-9, rtol=1e-7, path=label)
                if msg and label == "y" and training:
                    dims, bc = [0, *range(2, x.ndim)], [1, C] + [1] * (x.ndim - 2)   # bc: (C,) -> broadcastable
                    var_n1 = x.var(dims, unbiased=True, keepdim=True)
                    y_unbiased = (x - x.mean(dims, keepdim=True)) / torch.sqrt(var_n1 + eps) * gamma.reshape(bc) \
                        + beta.reshape(bc)
                    if compare_values(y_unbiased, got, atol=1e-9, rtol=1e-7) is None:
                        msg += (" (normalised with the unbiased variance, sum / (n - 1): batch norm normalises with "
                                "the biased one, sum / n, and uses the unbiased one only for the running variance)")
                if msg:
                    return msg
            for label, before in (("x", x), ("running_mean", rm), ("running_var", rv)):
                if not torch.equal(passed[label], before):
                    return (f"{label} was changed in place: the caller's tensor must keep its value (the module "
                            "that owns the running statistics replaces them with the returned ones)")
            return None

        return Case(name, test=test)

    cases = [
        case("training, (N, C) = (16, 5)", (16, 5), True, 0.1, 1e-5, 0),
        case("training, (N, C, H, W) = (4, 3, 5, 6): statistics over N, H, W", (4, 3, 5, 6), True, 0.1, 1e-5, 1),
        case("training, momentum 0.3, eps 1e-3", (8, 4), True, 0.3, 1e-3, 2),
        case("eval mode uses the running statistics, (N, C)", (16, 5), False, 0.1, 1e-5, 3),
        case("eval mode, (N, C, H, W)", (2, 3, 4, 4), False, 0.1, 1e-5, 4),
        device_case(inputs=lambda: (torch.randn(4, 3, 5, 5), torch.ones(3), torch.zeros(3), torch.zeros(3),
                                    torch.ones(3), True, 0.1, 1e-5)),
    ]
    return run_check(
        "batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)",
        batchnorm_forward, cases,
        hint="training normalises with the batch's per-channel statistics and updates the running ones; evaluation normalises with the running statistics",
        solution="in training, per channel: mean and BIASED variance over every dim but 1 normalise x; "
             "the running variance is updated with the UNBIASED variance (n / (n - 1)); "
             "new = (1 - momentum) * old + momentum * batch; in eval, normalise with the running stats",
    )


@tiered
def check_dropout(dropout: Callable) -> bool:
    """Check ``dropout(x, p, training)`` (inverted dropout) by its statistics and invariants."""
    import torch

    def stats_case(p):
        def test(fn):
            torch.manual_seed(0)
            x = torch.rand(200_000, dtype=torch.float64) + 0.5
            x_in = x.clone()
            y = fn(x_in, p, True)
            if not torch.equal(x_in, x):
                return ("dropout changed its input in place: return a new tensor (x * mask / (1 - p)); an in-place "
                        "change breaks autograd when x is a ReLU output")
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                return f"expected a tensor of shape {tuple(x.shape)}, got {getattr(y, 'shape', type(y).__name__)}"
            dropped = (y == 0).double().mean().item()
            if abs(dropped - p) > 0.01:
                return f"fraction of zeros {dropped:.3f}, expected about p = {p}"
            kept = y != 0
            msg = compare_values(x[kept] / (1 - p), y[kept], atol=1e-9, rtol=1e-9, path="kept values")
            if msg:
                return msg + f" (kept entries must be scaled by 1 / (1 - p) = {1 / (1 - p):.3f})"
            ratio = y.mean().item() / x.mean().item()
            if abs(ratio - 1) > 0.02:
                return f"the mean changed by a factor {ratio:.3f}: inverted dropout keeps the expectation"
            return None

        return test

    def eval_case(fn):
        x = torch.randn(5, 7, dtype=torch.float64)
        return compare_values(x, fn(x.clone(), 0.5, False), atol=0, rtol=0, path="eval output")

    def p0_case(fn):
        x = torch.randn(5, 7, dtype=torch.float64)
        return compare_values(x, fn(x.clone(), 0.0, True), atol=1e-12, rtol=0, path="output with p = 0")

    def random_case(fn):
        x = torch.ones(1000, dtype=torch.float64)
        torch.manual_seed(1)
        a = fn(x.clone(), 0.5, True)
        b = fn(x.clone(), 0.5, True)
        if torch.equal(a, b):
            return "two calls dropped the same units: draw a fresh random mask on every call"
        return None

    cases = [
        Case("training, p = 0.3: zeros fraction and scaling", test=stats_case(0.3)),
        Case("training, p = 0.8", test=stats_case(0.8)),
        Case("eval mode is the identity", test=eval_case),
        Case("p = 0 keeps everything", test=p0_case),
        Case("a new mask on every call", test=random_case),
        device_case(inputs=lambda: (torch.rand(50, 8) + 0.5, 0.5, True)),
    ]
    return run_check(
        "dropout(x, p, training)", dropout, cases,
        hint='inverted dropout: zero each entry with probability p and rescale the survivors so the expectation is unchanged; nothing happens outside training',
        solution="keep each entry with probability 1 - p (a Bernoulli mask drawn with torch's RNG, "
             "e.g. torch.rand_like(x) >= p) and divide the kept entries by 1 - p; return x unchanged "
             "when not training",
    )


def reference_batchnorm_backward(dy, x, gamma, eps):
    """(dx, dgamma, dbeta) of training-mode batch norm (batch statistics), by autograd of F.batch_norm."""
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():                                   # also inside a backward pass, where grad mode is off
        x_ = x.detach().clone().requires_grad_(True)
        g_ = gamma.detach().clone().requires_grad_(True)
        b_ = torch.zeros_like(g_, requires_grad=True)
        y = F.batch_norm(x_, None, None, g_, b_, training=True, eps=eps)
        return torch.autograd.grad(y, (x_, g_, b_), dy)


@tiered
def check_batchnorm_backward(batchnorm_backward: Callable) -> bool:
    """Check ``batchnorm_backward(dy, x, gamma, eps)`` -> (dx, dgamma, dbeta) against autograd."""
    import torch

    def inputs(shape, seed, scale=1.0):
        g = torch.Generator().manual_seed(seed)
        C = shape[1]
        return (torch.randn(shape, generator=g, dtype=torch.float64),
                scale * torch.randn(shape, generator=g, dtype=torch.float64) + 2.0,
                torch.rand(C, generator=g, dtype=torch.float64) + 0.5, 1e-5)

    def diagnosed(shape, seed):
        def test(fn):
            dy, x, gamma, eps = inputs(shape, seed)
            try:
                with torch.no_grad():                           # as inside autograd.Function.backward
                    got = fn(dy.clone(), x.clone(), gamma.clone(), eps)
            except RuntimeError as exc:
                if "grad" not in str(exc):
                    raise
                return ("computed with autograd? Write the three terms by hand; autograd is off inside a backward "
                        f"pass ({_describe(exc)})")
            if not isinstance(got, tuple | list) or len(got) != 3:
                return "expected a tuple (dx, dgamma, dbeta)"
            want = reference_batchnorm_backward(dy, x, gamma, eps)
            for label, w, g in zip(("dx", "dgamma", "dbeta"), want, got):
                msg = compare_values(w, g, atol=1e-9, rtol=1e-7, path=label)
                if msg is None:
                    continue
                if label == "dx":
                    dims = [0] + list(range(2, x.ndim))
                    shape_c = [1, -1] + [1] * (x.ndim - 2)
                    scale = gamma.reshape(shape_c) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
                    if compare_values(scale * dy, g, atol=1e-9, rtol=1e-7) is None:
                        return (msg + " (that treats the batch mean and variance as constants: they depend on x "
                                "too, which adds two terms)")
                    if compare_values(scale * (dy - dy.mean(dims, keepdim=True)), g, atol=1e-9, rtol=1e-7) is None:
                        return (msg + " (missing the variance term: you have the paths through x_hat and the mean, "
                                "but the batch variance depends on every x of the channel too, which adds "
                                "-x_hat * <dy x_hat>)")
                return msg
            return None
        return test

    cases = [
        Case("(N, C) = (16, 5)", test=diagnosed((16, 5), 0)),
        Case("(N, C, H, W) = (4, 3, 5, 6): statistics over N, H and W", test=diagnosed((4, 3, 5, 6), 1)),
        Case("batch of 2, (2, 4)", test=diagnosed((2, 4), 2)),
        Case("one channel, (8, 1, 3, 3)", test=diagnosed((8, 1, 3, 3), 3)),
        device_case(inputs=lambda: inputs((6, 3, 2, 2), 4)),
    ]
    return run_check(
        "batchnorm_backward(dy, x, gamma, eps)", batchnorm_backward, cases,
        hint="dbeta and dgamma sum over every dimension but the channel; for dx remember that the batch mean and "
             "variance are functions of every x in the channel, so each dx collects three terms",
        solution="x_hat = (x - mean) / sqrt(var + eps) (biased var over dims D = all but 1); dbeta = dy.sum(D); "
                 "dgamma = (dy * x_hat).sum(D); dx = gamma / sqrt(var + eps) * (dy - dy.mean(D) - x_hat * "
                 "(dy * x_hat).mean(D)), with keepdim so the (C,) pieces broadcast",
    )
