"""The policy-gradient and planning checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
from conftest import check_failure_output as _failure_output
from conftest import check_verdict as _verdict

from utils.checks import policy as checks


# ------------------------------------------------------------------------------------ discounted_returns
def returns_loop(rewards, gamma):
    G = torch.zeros_like(rewards)
    run = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        run = rewards[..., t] + gamma * run
        G[..., t] = run
    return G


def returns_matrix(rewards, gamma):
    """Correct, written differently: one matrix product with the discounts gamma^(k - t) for k >= t."""
    T = rewards.shape[-1]
    t = torch.arange(T, device=rewards.device)
    power = (t[None, :] - t[:, None]).clamp(min=0).to(rewards.dtype)          # (t, k): k - t
    discount = torch.where(t[None, :] >= t[:, None], torch.full_like(power, gamma) ** power, torch.zeros_like(power))
    return rewards @ discount.T


def returns_forward(rewards, gamma):
    G = torch.zeros_like(rewards)
    run = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1]):
        run = rewards[..., t] + gamma * run
        G[..., t] = run
    return G


def returns_reversed(rewards, gamma):
    return returns_loop(rewards, gamma).flip(-1)


def returns_total(rewards, gamma):
    G = returns_loop(rewards, gamma)
    return G[..., :1].expand_as(G).clone()


def returns_extra_gamma(rewards, gamma):
    G = torch.zeros_like(rewards)
    run = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        run = gamma * (rewards[..., t] + run)
        G[..., t] = run
    return G


def returns_no_discount(rewards, gamma):
    return rewards.flip(-1).cumsum(-1).flip(-1)


def returns_axis0(rewards, gamma):
    if rewards.dim() == 1:
        return returns_loop(rewards, gamma)
    return returns_loop(rewards.T.contiguous(), gamma).T


def returns_without_r_t(rewards, gamma):
    """Off by one: G_t = gamma * G_(t+1), the reward of step t itself left out."""
    return returns_loop(rewards, gamma) - rewards


def returns_stored_before_update(rewards, gamma):
    """Off by one: the running sum is stored before r_t is added, so G[t] holds G_(t+1)."""
    G = torch.zeros_like(rewards)
    run = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        G[..., t] = run
        run = rewards[..., t] + gamma * run
    return G


def returns_gamma_from_start(rewards, gamma):
    """G_t = sum_(k >= t) gamma^k r_k: the discount counted from the episode's start, not from t."""
    T = rewards.shape[-1]
    weighted = rewards * gamma ** torch.arange(T, dtype=rewards.dtype)
    return weighted.flip(-1).cumsum(-1).flip(-1)


def returns_in_place(rewards, gamma):
    for t in reversed(range(rewards.shape[-1] - 1)):
        rewards[..., t] += gamma * rewards[..., t + 1]
    return rewards


def returns_cpu(rewards, gamma):
    G = torch.zeros(rewards.shape, dtype=rewards.dtype)                        # on the CPU
    run = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        run = rewards[..., t] + gamma * run
        G[..., t] = run
    return G


def returns_numpy(rewards, gamma):
    import numpy as np

    r = rewards.numpy()
    G = np.zeros_like(r)
    run = 0.0
    for t in reversed(range(r.shape[-1])):
        run = r[..., t] + gamma * run
        G[..., t] = run
    return G


def test_discounted_returns_accepts_correct_versions(capsys):
    assert _verdict(checks.check_discounted_returns, returns_loop, capsys)
    assert _verdict(checks.check_discounted_returns, returns_matrix, capsys)
    assert _verdict(checks.check_discounted_returns, checks.reference_discounted_returns, capsys)


def test_discounted_returns_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((returns_forward, "accumulated from the start"), (returns_reversed, "reverse order"),
                       (returns_total, "return of the whole episode"), (returns_extra_gamma, "discounted once too often"),
                       (returns_no_discount, "the discount is missing"), (returns_axis0, "time is the last axis"),
                       (returns_in_place, "modified in place"), (returns_numpy, "expected a torch.Tensor"),
                       (returns_without_r_t, "leaves out r_t"), (returns_stored_before_update, "leaves out r_t"),
                       (returns_gamma_from_start, "discounted from the start of the episode")):
        out = _failure_output(checks.check_discounted_returns, wrong, capsys)
        assert why in out, (wrong.__name__, out)
        assert "hint:" in out and "solution:" not in out
    checks.check_discounted_returns(returns_forward, show_solution=True)
    assert "solution: G = torch.zeros_like(rewards)" in capsys.readouterr().out


def test_discounted_returns_off_by_one_message_is_the_same_for_gamma_1_and_t_1():
    """For gamma = 1 (or T = 1) G_(t+1) and gamma * G_(t+1) coincide: both mistakes must read the same."""
    from utils.checks.policy import OFF_BY_ONE, _returns_case

    for rewards, gamma in ((torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64), 1.0),
                           (torch.tensor([[0.7], [-1.2]], dtype=torch.float64), 0.9)):
        for wrong in (returns_without_r_t, returns_stored_before_update):
            msg = _returns_case(rewards, gamma)(wrong)
            assert msg is not None and OFF_BY_ONE in msg, (wrong.__name__, gamma, msg)




def test_discounted_returns_device_probe(capsys):
    out = _failure_output(checks.check_discounted_returns, returns_cpu, capsys)
    assert "✗ inputs on another device" in out, out


# ------------------------------------------------------------------------------------ reinforce_loss
def loss_ok(log_probs, returns, baseline=None):
    adv = returns.detach() - (0 if baseline is None else baseline.detach() if torch.is_tensor(baseline) else baseline)
    terms = log_probs * adv
    return -(terms.flatten(1).sum(1) if terms.dim() > 1 else terms).mean()


def loss_einsum(log_probs, returns, baseline=None):
    """Correct, written differently: a reshape to (N, -1) and a dot product per episode."""
    with torch.no_grad():
        adv = returns - baseline if baseline is not None else returns.clone()
        adv = adv.expand_as(log_probs)
    N = log_probs.shape[0]
    return -torch.einsum("nt,nt->", log_probs.reshape(N, -1), adv.reshape(N, -1)) / N


def loss_sign(log_probs, returns, baseline=None):
    return -loss_ok(log_probs, returns, baseline)


def loss_ignores_baseline(log_probs, returns, baseline=None):
    return loss_ok(log_probs, returns)


def loss_adds_baseline(log_probs, returns, baseline=None):
    return loss_ok(log_probs, returns, None if baseline is None else -baseline)


def loss_mean_all(log_probs, returns, baseline=None):
    adv = returns.detach() - (0 if baseline is None else baseline.detach())
    return -(log_probs * adv).mean()


def loss_sum_episodes(log_probs, returns, baseline=None):
    adv = returns.detach() - (0 if baseline is None else baseline.detach())
    return -(log_probs * adv).sum()


def loss_baseline_grad(log_probs, returns, baseline=None):
    adv = returns.detach() - (0 if baseline is None else baseline)
    terms = log_probs * adv
    return -(terms.flatten(1).sum(1) if terms.dim() > 1 else terms).mean()


def loss_returns_grad(log_probs, returns, baseline=None):
    adv = returns - (0 if baseline is None else baseline.detach())
    terms = log_probs * adv
    return -(terms.flatten(1).sum(1) if terms.dim() > 1 else terms).mean()


def loss_per_episode(log_probs, returns, baseline=None):
    adv = returns.detach() - (0 if baseline is None else baseline.detach())
    terms = log_probs * adv
    return -(terms.flatten(1).sum(1) if terms.dim() > 1 else terms)


def loss_detached(log_probs, returns, baseline=None):
    return loss_ok(log_probs.detach(), returns, baseline)


def loss_detach_any_baseline(log_probs, returns, baseline=None):
    """Correct for tensors, but calls .detach() on any baseline: a plain Python number has none."""
    adv = returns.detach() - (0 if baseline is None else baseline.detach())
    terms = log_probs * adv
    return -(terms.flatten(1).sum(1) if terms.dim() > 1 else terms).mean()


def loss_cpu(log_probs, returns, baseline=None):
    per_episode = torch.zeros(log_probs.shape[0], dtype=log_probs.dtype)          # on the CPU
    adv = returns.detach() - (0 if baseline is None else baseline.detach())
    per_episode = per_episode + (log_probs * adv).reshape(log_probs.shape[0], -1).sum(1)
    return -per_episode.mean()


def loss_normalized(log_probs, returns, baseline=None):
    adv = returns.detach() - (0 if baseline is None else baseline.detach() if torch.is_tensor(baseline) else baseline)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)                  # the training-code trick, not the estimator
    return -(log_probs * adv).reshape(log_probs.shape[0], -1).sum(1).mean()


def loss_batch_mean_baseline(log_probs, returns, baseline=None):
    adv = returns.detach() - returns.detach().mean()                # ignores the baseline it was given
    return -(log_probs * adv).reshape(log_probs.shape[0], -1).sum(1).mean()


def loss_zero(log_probs, returns, baseline=None):
    return torch.tensor(0.0)


def test_reinforce_loss_accepts_correct_versions(capsys):
    assert _verdict(checks.check_reinforce_loss, loss_ok, capsys)
    assert _verdict(checks.check_reinforce_loss, loss_einsum, capsys)
    assert _verdict(checks.check_reinforce_loss, checks.reference_reinforce_loss, capsys)


def test_reinforce_loss_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((loss_sign, "the sign is flipped"), (loss_ignores_baseline, "the baseline was ignored"),
                       (loss_adds_baseline, "the baseline was added"),
                       (loss_mean_all, "averaged over all (episode, step) entries"),
                       (loss_sum_episodes, "you summed over the episodes"),
                       (loss_baseline_grad, "gradient flows into the baseline"),
                       (loss_returns_grad, "gradient flows into the returns"),
                       (loss_per_episode, "return one number"), (loss_detached, "carries no gradient"),
                       (loss_detach_any_baseline, "a plain Python number (b = 1.5), which has no .detach()"),
                       (loss_normalized, "you normalized the advantages"),
                       (loss_batch_mean_baseline, "subtracted the batch mean of the returns"),
                       (loss_zero, "constant 0 with no gradient")):
        out = _failure_output(checks.check_reinforce_loss, wrong, capsys)
        assert why in out, (wrong.__name__, out)
        assert "hint:" in out and "solution:" not in out


def test_reinforce_loss_device_probe(capsys):
    out = _failure_output(checks.check_reinforce_loss, loss_cpu, capsys)
    assert "✗ inputs on another device" in out, out


# ------------------------------------------------------------------------------------ plan_actions
def plan_ok(model, x0, cost, horizon, steps, lr, actions=None, *, reduce="sum", no_grad=False, check_horizon=True):
    if actions is None:
        actions = x0.new_zeros(x0.shape[0], horizon, model.action_dim)
    if check_horizon and actions.shape[1] != horizon:
        raise ValueError(f"actions: expected {horizon} steps, got {actions.shape[1]}")
    actions = actions.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([actions], lr=lr)
    for _ in range(steps):
        x, states = x0, []
        with torch.set_grad_enabled(not no_grad):
            for t in range(horizon):
                x = model(x, actions[:, t])
                states.append(x)
        per_start = cost(torch.stack(states, 1), actions)                           # (B,)
        loss = per_start.mean() if reduce == "mean" else per_start.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actions.detach()


def plan_mean(model, x0, cost, horizon, steps, lr, actions=None):
    return plan_ok(model, x0, cost, horizon, steps, lr, actions, reduce="mean")


def plan_no_grad_rollout(model, x0, cost, horizon, steps, lr, actions=None):
    return plan_ok(model, x0, cost, horizon, steps, lr, actions, no_grad=True)


def plan_no_horizon_check(model, x0, cost, horizon, steps, lr, actions=None):
    return plan_ok(model, x0, cost, horizon, steps, lr, actions, check_horizon=False)


def plan_manual_adam(model, x0, cost, horizon, steps, lr, actions=None, betas=(0.9, 0.999), eps=1e-8):
    """Correct, written differently: torch.autograd.grad and Adam's update written out."""
    a = x0.new_zeros(x0.shape[0], horizon, model.action_dim) if actions is None else actions.clone()
    if a.shape[1] != horizon:
        raise ValueError(f"a plan of {a.shape[1]} steps for horizon {horizon}")
    m, v = torch.zeros_like(a), torch.zeros_like(a)
    for k in range(1, steps + 1):
        a.requires_grad_(True)
        x, total = x0, 0
        states = []
        for t in range(horizon):
            x = model(x, a[:, t])
            states.append(x)
        total = cost(torch.stack(states, 1), a).sum()
        g, = torch.autograd.grad(total, a)
        with torch.no_grad():
            m = betas[0] * m + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g * g
            m_hat, v_hat = m / (1 - betas[0] ** k), v / (1 - betas[1] ** k)
            a = a - lr * m_hat / (v_hat.sqrt() + eps)
    return a.detach()


def _plan_variant(**kwargs):
    def plan(model, x0, cost, horizon, steps, lr, actions=None):
        return checks.reference_plan_actions(model, x0, cost, horizon, steps, lr, actions, **kwargs)
    return plan


def plan_model_params_too(model, x0, cost, horizon, steps, lr, actions=None):
    if actions is None:
        actions = x0.new_zeros(x0.shape[0], horizon, model.action_dim)
    actions = actions.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([actions, *model.parameters()], lr=lr)
    for _ in range(steps):
        x, states = x0, []
        for t in range(horizon):
            x = model(x, actions[:, t])
            states.append(x)
        loss = cost(torch.stack(states, 1), actions).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actions.detach()


def plan_returns_grad(model, x0, cost, horizon, steps, lr, actions=None):
    return plan_ok(model, x0, cost, horizon, steps, lr, actions).requires_grad_(True)


def plan_in_place(model, x0, cost, horizon, steps, lr, actions=None):
    if actions is None:
        actions = x0.new_zeros(x0.shape[0], horizon, model.action_dim)
    actions.requires_grad_(True)                                                  # optimizes the caller's tensor
    opt = torch.optim.Adam([actions], lr=lr)
    for _ in range(steps):
        x, states = x0, []
        for t in range(horizon):
            x = model(x, actions[:, t])
            states.append(x)
        loss = cost(torch.stack(states, 1), actions).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actions.detach().clone()


def plan_includes_x0(model, x0, cost, horizon, steps, lr, actions=None):
    if actions is None:
        actions = x0.new_zeros(x0.shape[0], horizon, model.action_dim)
    actions = actions.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([actions], lr=lr)
    for _ in range(steps):
        x, states = x0, [x0]
        for t in range(horizon):
            x = model(x, actions[:, t])
            states.append(x)
        loss = cost(torch.stack(states, 1), actions).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actions.detach()


def plan_each_start_alone(model, x0, cost, horizon, steps, lr, actions=None):
    """Correct, written differently: each start planned on its own, x0[i:i+1], so cost sees (1, H, S)."""
    plans = [plan_ok(model, x0[i:i + 1], cost, horizon, steps, lr, None if actions is None else actions[i:i + 1])
             for i in range(x0.shape[0])]
    return torch.cat(plans)


def plan_states_x0_to_before_last(model, x0, cost, horizon, steps, lr, actions=None):
    """The cost gets x_0..x_(H-1), (B, H, S): the right shape, the wrong states."""
    if actions is None:
        actions = x0.new_zeros(x0.shape[0], horizon, model.action_dim)
    if actions.shape[1] != horizon:
        raise ValueError("horizon")
    actions = actions.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([actions], lr=lr)
    for _ in range(steps):
        x, states = x0, []
        for t in range(horizon):
            states.append(x)
            x = model(x, actions[:, t])
        loss = cost(torch.stack(states, 1), actions).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actions.detach()


def plan_cpu(model, x0, cost, horizon, steps, lr, actions=None):
    actions = torch.zeros(x0.shape[0], horizon, model.action_dim, dtype=x0.dtype)   # on the CPU
    return plan_ok(model, x0, cost, horizon, steps, lr, actions)


def test_plan_actions_accepts_correct_versions(capsys):
    assert _verdict(checks.check_plan_actions, plan_ok, capsys)
    assert _verdict(checks.check_plan_actions, plan_manual_adam, capsys)
    assert _verdict(checks.check_plan_actions, plan_each_start_alone, capsys)
    assert _verdict(checks.check_plan_actions, checks.reference_plan_actions, capsys)


def test_plan_actions_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((_plan_variant(detach_states=True), "the rollout was cut"),
                       (_plan_variant(zero_grad=False), "call optimizer.zero_grad()"),
                       (_plan_variant(optimizer="sgd"), "use torch.optim.Adam"),
                       (plan_model_params_too, "the model's parameters changed"),
                       (plan_returns_grad, "return actions.detach()"),
                       (plan_in_place, "modified in place"),
                       (plan_includes_x0, "you passed x_0 as well"),
                       (plan_states_x0_to_before_last, "the cost was given x_0..x_(H-1)"),
                       (plan_mean, "sum the per-start costs"),
                       (plan_no_grad_rollout, "the rollout carries no gradient"),
                       (plan_no_horizon_check, "raise a ValueError")):
        out = _failure_output(checks.check_plan_actions, wrong, capsys)
        assert why in out, (getattr(wrong, "__name__", wrong), out)
        assert "hint:" in out and "solution:" not in out
    checks.check_plan_actions(plan_includes_x0, show_solution=True)
    assert "solution: a = (actions" in capsys.readouterr().out


def test_plan_actions_device_probe(capsys):
    out = _failure_output(checks.check_plan_actions, plan_cpu, capsys)
    assert "✗ inputs on another device" in out, out


# ------------------------------------------------------------------------------------ robustness
def test_stubs_and_bad_functions_are_reported_without_raising(capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for check in (checks.check_discounted_returns, checks.check_reinforce_loss, checks.check_plan_actions):
        assert not check(stub)
        assert "not implemented yet" in capsys.readouterr().out
        for bad in (lambda *a, **k: None, lambda *a, **k: 1 / 0, lambda *a, **k: "text", 42):
            assert not check(bad)
            capsys.readouterr()
