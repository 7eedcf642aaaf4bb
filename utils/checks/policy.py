"""Checks for the policy-gradient and model-based-control lab (19): discounted_returns,
reinforce_loss and plan_actions.

References: a backward recursion in float64 for the returns-to-go (and hand-computed values),
the REINFORCE surrogate written out with the gradient it must send to the log-probabilities
(and none to the returns or the baseline), and a reference gradient-based planner (Adam on the
action sequence, backpropagating through the unrolled model) for ``plan_actions``. Typical
mistakes are recognised by computing them and comparing.
"""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_discounted_returns", "check_reinforce_loss", "check_plan_actions",
           "reference_discounted_returns", "reference_reinforce_loss", "reference_plan_actions"]


# ------------------------------------------------------------------------------------------ returns
def reference_discounted_returns(rewards, gamma: float):
    """Returns-to-go ``G_t = r_t + gamma * G_{t+1}`` along the last axis of (T,) or (N, T) rewards."""
    import torch

    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out


def _return_mistakes(rewards, gamma):
    """Typical wrong returns of the same rewards, each with its diagnosis."""
    import torch

    T = rewards.shape[-1]
    t = torch.arange(T, dtype=rewards.dtype)
    ref = reference_discounted_returns(rewards, gamma)
    forward = torch.stack([(rewards[..., : k + 1] * gamma ** (k - t[: k + 1])).sum(-1) for k in range(T)], -1)
    return (
        (forward, "you accumulated from the start of the episode: a return-to-go sums the rewards from step t "
                  "to the end, so run the recursion backwards, G_t = r_t + gamma * G_(t+1)"),
        (ref.flip(-1), "the returns come out in reverse order: fill G_t at position t while running backwards"),
        (ref[..., :1].expand_as(ref), "every entry holds the return of the whole episode (from t = 0): G_t "
                                      "starts at step t, so later steps have smaller returns-to-go"),
        (gamma * ref, "every return is discounted once too often: the first reward counts fully, "
                      "G_t = r_t + gamma * G_(t+1), not gamma * (r_t + G_(t+1))"),
        (rewards.flip(-1).cumsum(-1).flip(-1), "the discount is missing: G_t = r_t + gamma * G_(t+1)"),
        ((rewards * gamma ** t).flip(-1).cumsum(-1).flip(-1),
         "you discounted from the start of the episode, gamma^k r_k: within a return-to-go the discount counts from "
         "step t, G_t = sum_(k >= t) gamma^(k - t) r_k, so r_t itself counts fully"),
        (ref - rewards, OFF_BY_ONE),
        (torch.cat([ref[..., 1:], torch.zeros_like(ref[..., :1])], -1), OFF_BY_ONE),
    )


OFF_BY_ONE = ("off by one: your G_t leaves out r_t (it is G_(t+1) or gamma * G_(t+1), the return from the next step "
              "on; did you store the running sum before adding r_t?); the return-to-go from step t starts with the "
              "reward of step t itself: update first, then store, run = r_t + gamma * run; G[..., t] = run")


def _returns_case(rewards, gamma, atol=1e-10):
    def test(fn):
        import torch

        want = reference_discounted_returns(rewards, gamma)
        x = rewards.clone()
        got = fn(x, gamma)
        msg = compare_values(want, got, atol=atol, rtol=1e-7)
        if msg is None:
            if not torch.equal(x, rewards):
                return "the rewards passed in were modified in place: write the returns into a new tensor"
            return None
        if isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype:
            g = got.detach().cpu()
            for wrong, why in _return_mistakes(rewards, gamma):
                if torch.allclose(g, wrong, atol=atol, rtol=1e-7):
                    return f"{msg} ({why})"
            if rewards.dim() == 2 and rewards.shape[0] > 1:
                along_n = reference_discounted_returns(rewards.T.contiguous(), gamma).T
                if torch.allclose(g, along_n, atol=atol, rtol=1e-7):
                    return f"{msg} (you ran along axis 0: time is the last axis, rewards[..., t])"
        return msg
    return test


def _rewards(seed, shape, dtype=None):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype or torch.float64)


@tiered
def check_discounted_returns(discounted_returns: Callable) -> bool:
    """Check ``discounted_returns(rewards, gamma)`` -> returns-to-go of the same shape."""
    import torch

    hand = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    cases = [
        Case("rewards (1, 1, 1), gamma = 0.5: G = (1.75, 1.5, 1)", test=_returns_case(hand, 0.5)),
        Case("T = 6, gamma = 0.9", test=_returns_case(_rewards(0, (6,)), 0.9)),
        Case("gamma = 1: G_t is the sum of the rewards from t on", test=_returns_case(_rewards(1, (5,)), 1.0)),
        Case("gamma = 0: G_t = r_t", test=_returns_case(_rewards(2, (4,)), 0.0)),
        Case("a batch (N, T) = (3, 7), gamma = 0.99, time along the last axis",
             test=_returns_case(_rewards(3, (3, 7)), 0.99)),
        Case("one step, (N, T) = (4, 1)", test=_returns_case(_rewards(4, (4, 1)), 0.9)),
        Case("float32 rewards stay float32", test=_returns_case(_rewards(5, (2, 5), torch.float32), 0.9, 1e-5)),
        device_case(inputs=lambda: (_rewards(6, (3, 5), torch.float32), 0.9)),
    ]
    return run_check(
        "discounted_returns(rewards, gamma)", discounted_returns, cases,
        hint="the return-to-go obeys G_t = r_t + gamma * G_(t+1) with G_T = 0: loop t from the last step "
             "back to the first, along the last axis, and keep the rewards' shape, dtype and device",
        solution="G = torch.zeros_like(rewards); run = torch.zeros_like(rewards[..., 0]); for t in "
                 "reversed(range(rewards.shape[-1])): run = rewards[..., t] + gamma * run; G[..., t] = run; return G",
    )


# ------------------------------------------------------------------------------------------ REINFORCE
def reference_reinforce_loss(log_probs, returns, baseline=None):
    """``-mean_n sum_t log pi(a_t | s_t) (G_t - b_t)`` with returns and baseline treated as constants.

    log_probs, returns: (N,) or (N, T); baseline: None or broadcastable to returns. Returns a 0-d tensor.
    """
    advantage = returns.detach() - _constant(baseline)
    terms = log_probs * advantage
    if terms.dim() > 1:
        terms = terms.flatten(1).sum(1)
    return -terms.mean()


def _constant(baseline):
    """The baseline as a constant: 0 for None, a detached tensor, or the plain number itself."""
    if baseline is None:
        return 0
    return baseline.detach() if hasattr(baseline, "detach") else baseline


def _loss_inputs(seed, shape, baseline_kind):
    """A parameter theta with log_probs = log_softmax(theta)[actions], returns, and a baseline."""
    import torch

    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(*shape, 3, generator=g, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, 3, shape, generator=g)
    returns = 2 + torch.randn(*shape, generator=g, dtype=torch.float64)
    baseline = None
    if baseline_kind == "scalar":
        baseline = torch.tensor(1.5, dtype=torch.float64)
    elif baseline_kind == "float":                   # a plain Python number: it has no .detach()
        baseline = 1.5
    elif baseline_kind == "tensor":
        baseline = torch.randn(*shape, generator=g, dtype=torch.float64)
    elif baseline_kind == "learned":                 # a critic's output: it requires grad
        baseline = (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_(True)
    return theta, actions, returns, baseline


def _log_probs(theta, actions):
    return theta.log_softmax(-1).gather(-1, actions[..., None]).squeeze(-1)


def _reinforce_case(seed, shape, baseline_kind=None, returns_grad=False):
    def test(fn):
        import torch

        theta, actions, returns, baseline = _loss_inputs(seed, shape, baseline_kind)
        if returns_grad:
            returns = returns.clone().requires_grad_(True)
        want = reference_reinforce_loss(_log_probs(theta, actions), returns, baseline)
        want_grad, = torch.autograd.grad(want, theta)
        args = (_log_probs(theta, actions), returns) + (() if baseline is None else (baseline,))
        try:
            got = fn(*args)
        except AttributeError as exc:
            if not isinstance(baseline, float) or "detach" not in str(exc):
                raise
            return ("the baseline here is a plain Python number (b = 1.5), which has no .detach(): detach only a "
                    "tensor (torch.is_tensor(baseline)); a number is a constant already")
        if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.requires_grad and got.item() == 0:
            return "your loss is a constant 0 with no gradient: compute it from log_probs and the returns"
        msg = compare_values(want.detach(), got, atol=1e-10, rtol=1e-8)
        if msg is not None:
            if not isinstance(got, torch.Tensor) or got.numel() != 1:
                if isinstance(got, torch.Tensor):
                    msg += " (return one number: average over the episodes, not a loss per episode or per step)"
                return msg
            g, w = got.detach().item(), want.detach().item()
            adv = returns.detach() - _constant(baseline)
            lp = _log_probs(theta, actions).detach()
            diagnoses = [
                (-w, "the sign is flipped: the loss is MINUS the mean of log pi * (G - b), so that gradient "
                     "descent on it climbs the expected return"),
                ((lp * returns.detach()).flatten(1).sum(1).mean().neg().item() if lp.dim() > 1 else
                 -(lp * returns.detach()).mean().item(), "the baseline was ignored: use returns - baseline"),
                (-(lp * (returns.detach() + _constant(baseline))).reshape(len(lp), -1)
                 .sum(1).mean().item(), "the baseline was added: subtract it, G_t - b_t"),
                (-(lp * adv).mean().item(), "you averaged over all (episode, step) entries: sum over the steps of "
                                            "an episode, then average over the episodes"),
                (-(lp * adv).sum().item(), "you summed over the episodes: average over them (the N samples)"),
            ]

            def per_episode(a):
                return -(lp * a).reshape(len(lp), -1).sum(1).mean().item()

            centred = returns.detach() - returns.detach().mean()
            loose = [                                 # a library's epsilon may differ: compare to 1e-6
                (per_episode((adv - adv.mean()) / adv.std()), "you normalized the advantages (minus their mean, "
                 "divided by their std): a common trick in training code, but this function is the estimator "
                 "itself: use G - b exactly"),
                (per_episode(centred), "you subtracted the batch mean of the returns instead of the baseline you "
                 "were given: use the `baseline` argument (None means no baseline)"),
            ]
            for value, why, rtol in [(v, y, 1e-9) for v, y in diagnoses] + [(v, y, 1e-6) for v, y in loose]:
                if abs(g - value) <= rtol * (1 + abs(value)) and abs(value - w) > 1e-6 * (1 + abs(w)):
                    return f"{msg} ({why})"
            return msg
        if not got.requires_grad:
            return "the loss carries no gradient: do not detach the log-probabilities (or call .item())"
        try:
            got_grad, = torch.autograd.grad(got, theta, retain_graph=True)
        except RuntimeError as exc:
            return f"backward through your loss failed: {str(exc).splitlines()[0]}"
        msg = compare_values(want_grad, got_grad, atol=1e-10, rtol=1e-8, path="gradient of the policy parameters")
        if msg:
            return msg
        for name, value in (("baseline", baseline), ("returns", returns)):
            if isinstance(value, torch.Tensor) and value.requires_grad:
                leak, = torch.autograd.grad(got, value, retain_graph=True, allow_unused=True)
                if leak is not None and leak.abs().max() > 0:
                    return (f"gradient flows into the {name}: treat it as a constant (.detach()); in REINFORCE "
                            f"only log pi depends on the policy's parameters, and a critic is trained by its own loss")
        return None
    return test


@tiered
def check_reinforce_loss(reinforce_loss: Callable) -> bool:
    """Check ``reinforce_loss(log_probs, returns, baseline=None)``: value, gradient, no gradient to G or b."""
    def device_inputs():
        theta, actions, returns, baseline = _loss_inputs(7, (4, 3), "tensor")
        return _log_probs(theta.detach().float(), actions), returns.float(), baseline.float()

    cases = [
        Case("N = 6 one-step samples (N,), no baseline", test=_reinforce_case(0, (6,))),
        Case("N = 5 episodes of T = 4 steps (N, T): sum over steps, mean over episodes",
             test=_reinforce_case(1, (5, 4))),
        Case("(N, T) with a constant baseline b = 1.5", test=_reinforce_case(2, (5, 4), "scalar")),
        Case("(N, T) with a plain Python number as the baseline, b = 1.5 (a float, not a tensor)",
             test=_reinforce_case(8, (4, 3), "float")),
        Case("(N, T) with a baseline per entry", test=_reinforce_case(3, (3, 6), "tensor")),
        Case("a learned baseline (a critic's output, requires grad): no gradient may reach it",
             test=_reinforce_case(4, (4, 5), "learned")),
        Case("returns that require grad (bootstrapped from a critic): no gradient may reach them",
             test=_reinforce_case(5, (8,), None, returns_grad=True)),
        device_case(inputs=device_inputs),
    ]
    return run_check(
        "reinforce_loss(log_probs, returns, baseline)", reinforce_loss, cases,
        hint="the gradient of -mean_n sum_t log pi(a_t | s_t) * (G_t - b_t) is minus the REINFORCE estimate of "
             "grad J; the returns and the baseline are numbers here, not functions of the policy",
        solution="adv = returns.detach() - (0 if baseline is None else baseline.detach() if "
                 "torch.is_tensor(baseline) else baseline); terms = log_probs * adv; if terms.dim() > 1: "
                 "terms = terms.flatten(1).sum(1); return -terms.mean()",
    )


# ------------------------------------------------------------------------------------------ planning
def _rollout(model, x0, actions):
    import torch

    x, states = x0, []
    for t in range(actions.shape[1]):
        x = model(x, actions[:, t])
        states.append(x)
    return torch.stack(states, 1)                                      # (B, H, S)


def reference_plan_actions(model, x0, cost, horizon: int, steps: int, lr: float, actions=None, *,
                           detach_states=False, zero_grad=True, optimizer="adam", reduce="sum",
                           no_grad_rollout=False, include_x0=False):
    """Gradient-based MPC: Adam on the action sequence, through the unrolled model.

    Args:
        model: ``model(x (B, S), u (B, A)) -> (B, S)`` with attribute ``action_dim``.
        x0: (B, S) start states. cost: ``cost(states (B, H, S), actions (B, H, A)) -> (B,)``.
        horizon, steps, lr: plan length, number of Adam steps, learning rate.
        actions: optional initial guess (B, H, A); zeros when None (not modified).
        detach_states, zero_grad, optimizer, reduce, no_grad_rollout, include_x0: only for the check's typical
            mistakes.

    Returns:
        Tensor (B, H, A): the optimized actions, detached.

    Raises:
        ValueError: if ``actions`` is given with a number of steps other than ``horizon``.
    """
    import contextlib

    import torch

    if actions is None:
        actions = x0.new_zeros(x0.shape[0], horizon, model.action_dim)
    if actions.shape[1] != horizon:
        raise ValueError(f"actions: expected {horizon} steps (horizon), got shape {tuple(actions.shape)}")
    actions = actions.detach().clone().requires_grad_(True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([actions], lr=lr)
    for _ in range(steps):
        x, states = x0, []
        with torch.no_grad() if no_grad_rollout else contextlib.nullcontext():
            for t in range(horizon):
                x = model(x.detach() if detach_states else x, actions[:, t])
                states.append(x)
        if include_x0:                                                  # the mistake: x_0..x_(H-1)
            states = [x0, *states[:-1]]
        per_start = cost(torch.stack(states, 1), actions)
        loss = per_start.mean() if reduce == "mean" else per_start.sum()
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
    return actions.detach()


def _integrator():
    import torch

    class Integrator(torch.nn.Module):
        """x' = x + 0.5 * tanh(u): a point that moves by at most 0.5 per step and axis."""
        action_dim = 2

        def forward(self, x, u):
            return x + 0.5 * torch.tanh(u)

    return Integrator()


def _car():
    import torch

    class Car(torch.nn.Module):
        """A unicycle (x, y, heading) with speed tanh(u0) and turn rate 2 tanh(u1), dt = 0.1."""
        action_dim = 2

        def forward(self, x, u):
            v, w = torch.tanh(u[:, 0]), 2 * torch.tanh(u[:, 1])
            return x + 0.1 * torch.stack([v * torch.cos(x[:, 2]), v * torch.sin(x[:, 2]), w], 1)

    return Car()


def _mlp_model(seed):
    import torch

    class Learned(torch.nn.Module):
        action_dim = 1

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def forward(self, x, u):
            return x + 0.1 * self.net(torch.cat([x, u], 1))

    torch.manual_seed(seed)
    return Learned().double()


def _position_cost(states, actions):
    return (states[..., :2] ** 2).sum(-1).sum(-1) + 0.01 * (actions ** 2).sum((-1, -2))


def _final_cost(states, actions):
    return ((states[:, -1] - 1.0) ** 2).sum(-1)


NO_GRAD_ROLLOUT = ("the rollout carries no gradient: the predicted states were computed under torch.no_grad() "
                   "(or detached), so the cost cannot be backpropagated to the actions through the model; unroll "
                   "the model with autograd on, it is the path backprop through time follows")


def _horizon_case():
    """``actions`` with a number of steps other than ``horizon`` must raise a ValueError."""
    def test(fn):
        import torch

        x0 = torch.tensor([[1.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
        for steps_given in (6, 2):
            actions = torch.zeros(2, steps_given, 2, dtype=torch.float64)
            try:
                fn(_integrator(), x0, _position_cost, 4, 2, 0.1, actions)
            except ValueError:
                continue
            except Exception as exc:  # noqa: BLE001 - reported as the wrong kind of error
                return (f"actions with {steps_given} steps for horizon 4 raised {type(exc).__name__}: check "
                        "actions.shape[1] == horizon first and raise a ValueError that names both")
            return (f"actions with {steps_given} steps for horizon 4 were accepted: raise a ValueError "
                    "(a plan of the wrong length would be silently cut or fail deep inside the rollout)")
        return None
    return test


def _plan_case(model_fn, x0, cost, horizon, steps, lr, init=None):
    def test(fn):
        import torch

        model = model_fn()
        params = [p.detach().clone() for p in model.parameters()]
        seen = {}

        def spy(states, actions):
            out = cost(states, actions)
            if "shape" not in seen:                   # the first rollout: its shape, and whether it is differentiable
                seen["shape"], seen["states_grad"] = tuple(states.shape), states.requires_grad
                if out.requires_grad:                 # d loss / d cost: ones for a sum, 1 / B for a mean
                    out.register_hook(lambda g: seen.setdefault("cost_grad", g.detach().clone()))
            return out

        init_copy = None if init is None else init.clone()
        want = reference_plan_actions(model_fn(), x0, cost, horizon, steps, lr,
                                      None if init is None else init.clone())
        try:
            got = fn(model, x0.clone(), spy, horizon, steps, lr) if init is None else \
                fn(model, x0.clone(), spy, horizon, steps, lr, init_copy)
        except RuntimeError:
            if seen.get("states_grad") is False:
                return NO_GRAD_ROLLOUT
            raise
        B, S = x0.shape
        shape = seen.get("shape")
        if shape is not None and (len(shape) != 3 or shape[1:] != (horizon, S)):
            # only the horizon and the state size are fixed: planning each start on its own, x0[i:i+1], is fine
            return (f"cost received states of shape {shape}: pass the {horizon} predicted states "
                    f"x_1..x_H as (B, H, S) = {(B, horizon, S)} (time on axis 1"
                    + ("; you passed x_0 as well: the start is given, no action changes it)"
                       if len(shape) == 3 and shape[1] == horizon + 1 else ")"))
        weight = seen.get("cost_grad")
        if B > 1 and weight is not None and torch.allclose(weight, torch.full_like(weight, 1 / B)):
            return ("you averaged the per-start costs, cost(...).mean(): sum the per-start costs, cost(...).sum(). "
                    "The starts are separate problems: the sum gives each start the gradient of its own cost, "
                    f"while the mean divides it by B = {B}, so a plan would depend on how many other starts share "
                    "the batch (Adam's normalization hides most of that; plain gradient descent would not)")
        if isinstance(got, torch.Tensor) and got.requires_grad:
            return "the returned actions still require grad: return actions.detach()"
        msg = compare_values(want, got, atol=1e-7, rtol=1e-6)
        if any(not torch.equal(p, q.detach()) for p, q in zip(params, model.parameters())):
            return ("the model's parameters changed: optimize the actions only, torch.optim.Adam([actions], lr=lr); "
                    "the world model stays fixed while planning")
        if init is not None and not torch.equal(init, init_copy):
            return "the initial actions passed in were modified in place: optimize a copy, actions.detach().clone()"
        if msg is None:
            return None
        if seen.get("states_grad") is False:
            return f"{msg} ({NO_GRAD_ROLLOUT})"
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            g = got.detach().cpu()
            for kwargs, why in (
                    ({"detach_states": True}, "the rollout was cut: the states must stay differentiable through "
                                              "every step, so that backprop through time reaches early actions"),
                    ({"zero_grad": False}, "the gradients accumulate across steps: call optimizer.zero_grad() "
                                           "before each backward"),
                    ({"optimizer": "sgd"}, "use torch.optim.Adam([actions], lr=lr), as specified"),
                    ({"include_x0": True}, "the cost was given x_0..x_(H-1): it takes the predicted states "
                                           "x_1..x_H, the states the actions lead to; the start x0 is given and "
                                           "no action changes it, and the last action's effect must count")):
                wrong = reference_plan_actions(model_fn(), x0, cost, horizon, steps, lr,
                                               None if init is None else init.clone(), **kwargs)
                if torch.allclose(g, wrong, atol=1e-7, rtol=1e-6):
                    return f"{msg} ({why})"
            if steps > 0 and torch.allclose(g, want * 0 if init is None else init, atol=1e-12):
                return f"{msg} (the actions did not change: step the optimizer `steps` times)"
        elif isinstance(got, torch.Tensor):
            msg += f" (return the whole plan, (B, horizon, action_dim) = {tuple(want.shape)})"
        return msg
    return test


@tiered
def check_plan_actions(plan_actions: Callable) -> bool:
    """Check ``plan_actions(model, x0, cost, horizon, steps, lr, actions=None)`` against the reference planner."""
    import torch

    def dbl(*v):
        return torch.tensor(v, dtype=torch.float64)

    x_point = dbl(1.0, -2.0)[None].repeat(3, 1) * dbl(1.0, 0.5, -1.0)[:, None]
    x_car = torch.stack([dbl(1.0, 0.5, 2.0), dbl(-1.2, 0.3, -0.5)])
    g = torch.Generator().manual_seed(0)
    init = 0.3 * torch.randn(2, 6, 2, generator=g, dtype=torch.float64)

    def run(fn, device):
        x0 = torch.tensor([[1.0, -1.0]], device=device)
        return fn(_integrator().to(device), x0, _final_cost, 3, 2, 0.1)

    cases = [
        Case("a point x' = x + 0.5 tanh(u), 3 starts, horizon 4, 15 steps: reach the origin",
             test=_plan_case(_integrator, x_point, _position_cost, 4, 15, 0.1)),
        Case("only the final state is costed: the gradient must flow back through time",
             test=_plan_case(_integrator, x_point[:2], _final_cost, 5, 10, 0.05)),
        Case("a unicycle (x, y, heading), horizon 6, 8 steps, from a given initial plan",
             test=_plan_case(_car, x_car, _position_cost, 6, 8, 0.1, init)),
        Case("a small MLP world model (its parameters stay fixed), horizon 3",
             test=_plan_case(lambda: _mlp_model(1), dbl(0.5, -0.5)[None].repeat(2, 1), _final_cost, 3, 5, 0.2)),
        Case("steps = 0: the initial plan (zeros) comes back", test=_plan_case(_integrator, x_point, _position_cost,
                                                                               2, 0, 0.1)),
        Case("initial actions with 6 or 2 steps for horizon 4: a ValueError", test=_horizon_case()),
        device_case(run=run),
    ]
    return run_check(
        "plan_actions(model, x0, cost, horizon, steps, lr, actions=None)", plan_actions, cases,
        hint="MPC by gradient descent: the actions are the only parameters; unroll the model from x0 for horizon "
             "steps (with autograd on), sum the per-start costs, backpropagate through the whole rollout, take an Adam step, repeat",
        solution="a = (actions if actions is not None else x0.new_zeros(len(x0), horizon, model.action_dim)); "
                 "if a.shape[1] != horizon: raise ValueError(...); a = a.detach().clone().requires_grad_(True); opt = torch.optim.Adam([a], lr=lr); for each step: x = x0; "
                 "states = [x := model(x, a[:, t]) for t in range(horizon)]; loss = cost(torch.stack(states, 1), "
                 "a).sum(); opt.zero_grad(); loss.backward(); opt.step(); return a.detach()",
    )

