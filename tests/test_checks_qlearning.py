"""The lab-14 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import qlearning as checks


def _accepts_and_rejects(check, right, wrong, capsys):
    """Every correct version passes, every mistake fails."""
    for fn in right:
        assert _verdict(check, fn, capsys), fn.__name__
    for fn in wrong:
        assert not _verdict(check, fn, capsys), fn.__name__


# ---------------------------------------------------------------- value iteration
def vi_gauss_seidel(P, R, gamma, tol=1e-10):
    """Correct, written differently: in-place (Gauss-Seidel) sweeps with explicit loops."""
    S, A = R.shape
    V = np.zeros(S)
    while True:
        delta = 0.0
        for s in range(S):
            v = max(R[s, a] + gamma * P[s, a] @ V for a in range(A))
            delta = max(delta, abs(v - V[s]))
            V[s] = v
        if delta < tol * 1e-2:
            break
    policy = np.array([int(np.argmax([R[s, a] + gamma * P[s, a] @ V for a in range(A)])) for s in range(S)])
    return V, policy


def vi_no_gamma(P, R, gamma, tol=1e-10):
    return checks.reference_value_iteration(P, R, 1.0 if gamma < 1 else gamma, tol)


def vi_transposed(P, R, gamma, tol=1e-10):
    """Sums over the wrong axis: P[s', a, s] instead of P[s, a, s'] (diverges on some inputs)."""
    V = np.zeros(R.shape[0])
    with np.errstate(all="ignore"):
        for _ in range(10_000):
            V_new = (R + gamma * np.einsum("tas,t->sa", P, V)).max(1)
            if np.abs(V_new - V).max() < tol:
                break
            V = V_new
        return V_new, (R + gamma * P @ V_new).argmax(1)


def vi_policy_from_rewards(P, R, gamma, tol=1e-10):
    V, _ = checks.reference_value_iteration(P, R, gamma, tol)
    return V, R.argmax(1)


def vi_one_sweep(P, R, gamma, tol=1e-10):
    V = (R + gamma * P @ np.zeros(R.shape[0])).max(1)
    return V, (R + gamma * P @ V).argmax(1)


def vi_returns_q(P, R, gamma, tol=1e-10):
    V, pi = checks.reference_value_iteration(P, R, gamma, tol)
    return R + gamma * P @ V, pi


def test_value_iteration_check(capsys):
    assert _verdict(checks.check_value_iteration, checks.reference_value_iteration, capsys)
    assert _verdict(checks.check_value_iteration, vi_gauss_seidel, capsys)
    for wrong in (vi_no_gamma, vi_transposed, vi_policy_from_rewards, vi_one_sweep, vi_returns_q):
        assert not _verdict(checks.check_value_iteration, wrong, capsys), wrong.__name__


def vi_wrong_axis(P, R, gamma, tol=1e-10):
    """Sums over s instead of s' with a plain `while True` loop: never stops (oscillates or goes to nan)."""
    V = np.zeros(P.shape[0])
    while True:
        V_new = (R + gamma * np.einsum("sat,s->ta", P, V)).max(axis=1)
        if np.abs(V_new - V).max() < tol:
            break
        V = V_new
    return V_new, (R + gamma * P @ V_new).argmax(axis=1)


def test_value_iteration_check_stops_a_divergent_loop(capsys, monkeypatch):
    monkeypatch.setattr(checks, "TIME_LIMIT_S", 0.3)
    assert not _verdict(checks.check_value_iteration, vi_wrong_axis, capsys)
    checks.check_value_iteration(vi_wrong_axis)
    out = capsys.readouterr().out
    assert "did not stop within 0.3 s" in out and "sum over s'" in out
    assert checks.check_value_iteration(checks.reference_value_iteration)   # the limit leaves correct code alone


def test_value_iteration_blow_up_names_the_axis(capsys):
    """A loop with a cap that ends with huge values (no time-out) gets the P @ V hint too."""
    assert not _verdict(checks.check_value_iteration, vi_transposed, capsys)
    checks.check_value_iteration(vi_transposed)
    out = capsys.readouterr().out
    assert "V blows up: does P @ V sum over s'" in out and "did not stop" not in out, out
    checks.check_value_iteration(vi_no_gamma)                              # gamma forgotten: V grows too
    assert "is P @ V multiplied by gamma?" in capsys.readouterr().out
    checks.check_value_iteration(vi_one_sweep)                             # wrong, but small: no such hint
    assert "blows up" not in capsys.readouterr().out


def vi_no_gamma_capped(P, R, gamma, tol=1e-10):
    """gamma left out, with a cap of 5,000 sweeps: V grows but stays below the blow-up threshold."""
    V = np.zeros(P.shape[0])
    for _ in range(5000):
        V_new = (R + P @ V).max(axis=1)
        if np.abs(V_new - V).max() < tol:
            break
        V = V_new
    return V_new, (R + P @ V_new).argmax(axis=1)


def test_value_iteration_names_a_missing_gamma(capsys):
    assert not _verdict(checks.check_value_iteration, vi_no_gamma_capped, capsys)
    checks.check_value_iteration(vi_no_gamma_capped)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ✗")]
    assert len(lines) == 4 and all("is P @ V multiplied by gamma?" in line for line in lines), lines
    one_state = next(line for line in lines if "one state" in line)
    assert "exceeds max|R| / (1 - gamma) = 20" in one_state and "sum over s'" not in one_state   # S = 1: no axis
    grid = next(line for line in lines if "gamma = 0.5" in line)
    assert "V is the undiscounted value" in grid


def vi_no_gamma_forever(P, R, gamma, tol=1e-10):
    """gamma left out, no cap: never stops for gamma < 1 on MDPs without terminal states."""
    V = np.zeros(P.shape[0])
    while True:
        V_new = (R + P @ V).max(axis=1)
        if np.abs(V_new - V).max() < tol:
            return V_new, (R + P @ V_new).argmax(axis=1)
        V = V_new


def test_value_iteration_waits_for_one_time_out_only(capsys, monkeypatch):
    """Three cases would each run into the time limit: only the first waits, the others are skipped."""
    monkeypatch.setattr(checks, "TIME_LIMIT_S", 0.3)
    assert not _verdict(checks.check_value_iteration, vi_no_gamma_forever, capsys)
    checks.check_value_iteration(vi_no_gamma_forever)
    out = capsys.readouterr().out
    assert out.count("did not stop within 0.3 s") == 1 and "is P @ V multiplied by gamma?" in out, out
    assert out.count("not run: an earlier case ran past the 0.3 s time limit") == 3, out


def test_value_iteration_time_limit_outside_the_main_thread(capsys, monkeypatch):
    """No SIGALRM off the main thread: the sys.settrace fallback must stop the loop too."""
    monkeypatch.setattr(checks, "TIME_LIMIT_S", 0.3)
    verdict = {}
    worker = threading.Thread(target=lambda: verdict.setdefault("ok", checks.check_value_iteration(vi_wrong_axis)))
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and verdict == {"ok": False}
    assert "did not stop within 0.3 s" in capsys.readouterr().out


def test_grid_world_values():
    P, R = checks.grid_world()
    V, pi = checks.reference_value_iteration(P, R, 1.0)
    rows, cols = np.divmod(np.arange(12), 4)
    assert np.array_equal(V, -np.minimum(rows + cols, 5 - rows - cols).astype(float))
    assert np.allclose(P.sum(2), 1.0) and P.shape == (12, 4, 12)


# ---------------------------------------------------------------- toy-text converter
def arrays_ok(env):
    """Correct, written differently: collect transitions first, then scatter with np.add.at."""
    S, A = env.observation_space.n, env.action_space.n
    rows = [(s, a, p, s2, r, d) for s, acts in env.unwrapped.P.items() for a, tr in acts.items()
            for p, s2, r, d in tr]
    s, a, p, s2, r, d = (np.array(col) for col in zip(*rows))
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    np.add.at(P, (s, a, s2), p)
    np.add.at(R, (s, a), p * r)
    term = np.unique(s2[d.astype(bool)])
    P[term] = np.eye(S)[term][:, None, :]
    R[term] = 0
    return P, R


def _arrays_loop(env, accumulate):
    """No terminal handling; with accumulate=False repeated next states overwrite each other."""
    S, A = env.observation_space.n, env.action_space.n
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    for s, acts in env.unwrapped.P.items():
        for a, tr in acts.items():
            for p, s2, r, _ in tr:
                P[s, a, s2] = P[s, a, s2] + p if accumulate else p
                R[s, a] += p * r
    return P, R


def arrays_overwrite(env):
    return _arrays_loop(env, accumulate=False)


def arrays_no_terminal(env):
    return _arrays_loop(env, accumulate=True)


def arrays_reward_unweighted(env):
    P, _ = checks.reference_arrays(env)
    R = np.zeros(P.shape[:2])
    for s, acts in env.unwrapped.P.items():
        for a, tr in acts.items():
            R[s, a] = sum(r for _, _, r, _ in tr)
    R[P[np.arange(len(P)), 0, np.arange(len(P))] == 1] = 0
    return P, R


def arrays_fixed_size(env):
    P, R = checks.reference_arrays(env)
    if P.shape[0] == 16:
        return P, R
    out_P, out_R = np.zeros((16, 4, 16)), np.zeros((16, 4))
    n = min(16, P.shape[0])
    out_P[:n, :, :n], out_R[:n] = P[:n, :, :n], R[:n]
    return out_P, out_R


def arrays_float32(env):
    """Correct: float32 arrays (the brief names no dtype)."""
    P, R = checks.reference_arrays(env)
    return P.astype(np.float32), R.astype(np.float32)


def arrays_mirrored_row(env):
    """Wrong in an ordinary state (state 0's actions reversed): no hint about terminal states."""
    P, R = checks.reference_arrays(env)
    P[0] = P[0][::-1].copy()
    return P, R


def arrays_absorbing_source(env):
    """Makes the state a terminated transition starts from absorbing, instead of the one it enters."""
    S, A = env.observation_space.n, env.action_space.n
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    source = np.zeros(S, dtype=bool)
    for s, acts in env.unwrapped.P.items():
        for a, tr in acts.items():
            for p, s2, r, d in tr:
                P[s, a, s2] += p
                R[s, a] += p * r
                source[s] |= bool(d)
    P[source], R[source] = 0.0, 0.0
    P[source, :, source] = 1.0
    return P, R


def test_toy_text_check_hints_point_at_the_wrong_row(capsys):
    checks.check_toy_text_to_arrays(arrays_no_terminal)
    out = capsys.readouterr().out
    assert "is terminal: make terminal states absorbing" in out
    checks.check_toy_text_to_arrays(arrays_mirrored_row)
    out = capsys.readouterr().out
    assert "first wrong row: state 0" in out and "is terminal" not in out
    assert not _verdict(checks.check_toy_text_to_arrays, arrays_absorbing_source, capsys)
    checks.check_toy_text_to_arrays(arrays_absorbing_source)
    out = capsys.readouterr().out
    assert out.count("terminal states are the s_next of a terminated transition") == 5, out


def test_toy_text_check(capsys):
    assert _verdict(checks.check_toy_text_to_arrays, checks.reference_arrays, capsys)
    assert _verdict(checks.check_toy_text_to_arrays, arrays_ok, capsys)
    assert _verdict(checks.check_toy_text_to_arrays, arrays_float32, capsys)
    for wrong in (arrays_mirrored_row, arrays_overwrite, arrays_no_terminal, arrays_reward_unweighted, arrays_fixed_size):
        assert not _verdict(checks.check_toy_text_to_arrays, wrong, capsys), wrong.__name__


# ---------------------------------------------------------------- Q-learning update
def q_update_ok(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r + gamma * np.max(Q[s_next]) * (1 - terminated)
    td = target - Q[s, a]
    Q[s, a] = (1 - alpha) * Q[s, a] + alpha * target
    return float(td)


def q_update_ok2(Q, s, a, r, s_next, terminated, alpha, gamma):
    """Correct, written differently: numpy scalar return, explicit branch."""
    bootstrap = 0.0 if terminated else Q[s_next, :].max()
    delta = r + gamma * bootstrap - Q[s][a]
    Q[s][a] += alpha * delta
    return delta


def q_update_after(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r + (0 if terminated else gamma * Q[s_next].max())
    Q[s, a] += alpha * (target - Q[s, a])
    return target - Q[s, a]                                     # error after the update


def q_update_no_terminal(Q, s, a, r, s_next, terminated, alpha, gamma):
    return q_update_ok(Q, s, a, r, s_next, False, alpha, gamma)


def q_update_sarsa_like(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r + (0 if terminated else gamma * Q[s_next, a])     # same action, not the max
    td = target - Q[s, a]
    Q[s, a] += alpha * td
    return td


def q_update_copy(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q = Q.copy()
    return q_update_ok(Q, s, a, r, s_next, terminated, alpha, gamma)


def q_update_no_alpha(Q, s, a, r, s_next, terminated, alpha, gamma):
    td = r + (0 if terminated else gamma * Q[s_next].max()) - Q[s, a]
    Q[s, a] += td
    return td


def test_q_learning_update_check(capsys):
    assert _verdict(checks.check_q_learning_update, q_update_ok, capsys)
    assert _verdict(checks.check_q_learning_update, q_update_ok2, capsys)
    for wrong in (q_update_after, q_update_no_terminal, q_update_sarsa_like, q_update_copy, q_update_no_alpha):
        assert not _verdict(checks.check_q_learning_update, wrong, capsys), wrong.__name__


# ---------------------------------------------------------------- epsilon-greedy
def eps_ok(Q_row, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.integers(len(Q_row)))
    best = np.flatnonzero(Q_row == Q_row.max())
    return int(rng.choice(best))


def eps_ok2(Q_row, epsilon, rng):
    """Correct, written differently: random tie-breaking by a random permutation."""
    n = len(Q_row)
    explore = rng.uniform() < epsilon
    order = rng.permutation(n)
    if explore:
        return int(order[0])
    return int(order[np.argmax(np.asarray(Q_row)[order])])


def eps_no_ties(Q_row, epsilon, rng):
    return int(rng.integers(len(Q_row))) if rng.random() < epsilon else int(np.argmax(Q_row))


def eps_excluding_greedy(Q_row, epsilon, rng):
    greedy = int(np.argmax(Q_row))
    if rng.random() < epsilon and len(Q_row) > 1:
        others = [a for a in range(len(Q_row)) if a != greedy]
        return int(rng.choice(others))
    return greedy


def eps_max(Q_row, epsilon, rng):
    return int(rng.integers(len(Q_row))) if rng.random() < epsilon else Q_row.max()


def eps_inverted(Q_row, epsilon, rng):
    return eps_ok(Q_row, 1 - epsilon, rng)


def eps_global_rng(Q_row, epsilon, rng):
    if np.random.random() < epsilon:
        return int(np.random.randint(len(Q_row)))
    return int(np.random.choice(np.flatnonzero(Q_row == Q_row.max())))


def eps_python_random(Q_row, epsilon, rng):
    if random.random() < epsilon:
        return random.randrange(len(Q_row))
    return random.choice(list(np.flatnonzero(Q_row == Q_row.max())))


def test_epsilon_greedy_check(capsys):
    assert _verdict(checks.check_epsilon_greedy, eps_ok, capsys)
    assert _verdict(checks.check_epsilon_greedy, eps_ok2, capsys)
    for wrong in (eps_no_ties, eps_excluding_greedy, eps_max, eps_inverted, eps_global_rng, eps_python_random):
        assert not _verdict(checks.check_epsilon_greedy, wrong, capsys), wrong.__name__


@pytest.mark.parametrize("wrong, phrase, count", [
    (eps_no_ties, "(tied best actions: always the first one; choose among all tied actions at random)", 2),
    (eps_excluding_greedy, "(with epsilon = 1 the greedy action is never taken: a random action is any of the 4 "
                           "actions, the greedy one included)", 1),
    (eps_excluding_greedy, "(the greedy action gets only 1 - epsilon = 0.7", 1)], ids=["ties", "exclude", "exclude2"])
def test_epsilon_greedy_names_the_mistake(wrong, phrase, count, capsys):
    checks.check_epsilon_greedy(wrong)
    out = capsys.readouterr().out
    assert out.count(phrase) == count and "rng.choice(best)" not in out, out         # tier 1: no solution line


def test_checks_never_raise(capsys):
    def boom(*args):
        raise RuntimeError("boom")

    def todo(*args):
        raise NotImplementedError()

    for check in (checks.check_value_iteration, checks.check_toy_text_to_arrays, checks.check_q_learning_update,
                  checks.check_epsilon_greedy, checks.check_dqn_loss):
        assert not _verdict(check, boom, capsys)
        assert not _verdict(check, todo, capsys)


# ---------------------------------------------------------------- DQN loss
dqn_ok = checks.reference_dqn_loss          # the notebook's solution, line for line


def dqn_ok2(q_net, target_net, batch, gamma):
    """Correct, written differently: indexing, detach, torch.where on the terminal flag, Huber by hand."""
    states, actions, rewards, next_states, terminated = batch
    q_taken = q_net(states)[torch.arange(len(actions), device=actions.device), actions]
    bootstrap = target_net(next_states).detach().max(dim=1)[0]
    target = torch.where(terminated.bool(), rewards, rewards + gamma * bootstrap)
    err = (q_taken - target).abs()
    return torch.where(err < 1, 0.5 * err ** 2, err - 0.5).mean()


def _dqn_variant(name, *, mask=True, online_max=False, grad_target=False, gather_dim=1, loss=F.smooth_l1_loss,
                 max_not_taken=False, cpu_mask=False, squeeze=True):
    """The solution with one mistake switched on."""
    def fn(q_net, target_net, batch, gamma):
        states, actions, rewards, next_states, terminated = batch
        q_all = q_net(states)
        q_taken = q_all.max(dim=1).values if max_not_taken else q_all.gather(gather_dim, actions[:, None])
        q_taken = q_taken.squeeze(1) if squeeze and q_taken.ndim == 2 else q_taken
        with torch.enable_grad() if grad_target else torch.no_grad():
            alive = (torch.ones(len(terminated)) if cpu_mask else 1) - terminated if mask else 1
            bootstrap = (q_net if online_max else target_net)(next_states).max(dim=1).values
            target = rewards + gamma * alive * bootstrap
        return loss(q_taken, target)
    fn.__name__ = name
    return fn


dqn_no_terminal_mask = _dqn_variant("dqn_no_terminal_mask", mask=False)
dqn_online_max = _dqn_variant("dqn_online_max", online_max=True)
dqn_grad_through_target = _dqn_variant("dqn_grad_through_target", grad_target=True)
dqn_gather_dim0 = _dqn_variant("dqn_gather_dim0", gather_dim=0)
dqn_mse = _dqn_variant("dqn_mse", loss=F.mse_loss)
dqn_max_not_taken = _dqn_variant("dqn_max_not_taken", max_not_taken=True)
dqn_cpu_mask = _dqn_variant("dqn_cpu_mask", cpu_mask=True)     # right values, the mask made on the CPU
dqn_sum = _dqn_variant("dqn_sum", loss=lambda q, t: F.smooth_l1_loss(q, t, reduction="sum"))
dqn_no_squeeze = _dqn_variant("dqn_no_squeeze", squeeze=False)  # (B, 1) against (B,): broadcasts to (B, B)


@pytest.mark.filterwarnings("ignore:Using a target size")        # dqn_no_squeeze broadcasts, and torch says so
def test_dqn_loss_check(capsys):
    _accepts_and_rejects(checks.check_dqn_loss, (dqn_ok, dqn_ok2, _dqn_variant("dqn_variant_default")),
                         (dqn_no_terminal_mask, dqn_online_max, dqn_grad_through_target, dqn_gather_dim0, dqn_mse,
                          dqn_max_not_taken, dqn_cpu_mask, dqn_sum, dqn_no_squeeze), capsys)


@pytest.mark.parametrize("wrong, phrase", [
    (dqn_no_terminal_mask, "(1 - terminated)"), (dqn_online_max, "use target_net(next_states)"),
    (dqn_grad_through_target, "a gradient reached the target network"), (dqn_gather_dim0, "wrong dimension"),
    (dqn_mse, "Huber"), (dqn_max_not_taken, "not the action taken"),
    (dqn_sum, "the mean over the batch, not the sum"),
    (dqn_no_squeeze, "Q(s, a) has shape (B, 1): squeeze(1) so it matches the (B,) target")],
    ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_dqn_loss_names_the_mistake(wrong, phrase, capsys):
    checks.check_dqn_loss(wrong)
    out = capsys.readouterr().out
    assert phrase in out and "smooth_l1_loss(q_taken, target)" not in out, out     # tier 1: no solution line
    value_lines = [line for line in out.splitlines() if line.startswith("  ✗") and "loss: expected" in line]
    assert all(phrase in line for line in value_lines), out                         # never another mistake's advice


def test_dqn_loss_solution_tier(capsys):
    checks.check_dqn_loss(dqn_mse, show_solution=True)
    assert "smooth_l1_loss(q_taken, target)" in capsys.readouterr().out            # tier 2: the solution line


def test_dqn_hand_batch_value():
    q_net, target_net = checks._table_net(checks._Q_ONLINE), checks._table_net(checks._Q_TARGET)
    loss = checks.reference_dqn_loss(q_net, target_net, checks._hand_batch(), 0.9)
    assert abs(loss.item() - 0.28125) < 1e-6
    mistakes = {advice.split(":")[0]: wrong.item() for advice, wrong in
                checks._dqn_mistakes(q_net, target_net, checks._hand_batch(), 0.9).items()}
    assert abs(mistakes["summed over the batch"] - 1.125) < 1e-6                             # 4 x 0.28125
    assert abs(mistakes["a terminal transition still bootstraps"] - 1.35) < 1e-6            # (0.32 + 4.4 + 0.08 + 0.6) / 4
    wrong_values = sorted(v for v in mistakes.values() if abs(v - 0.28125) > 1e-5)
    assert all(b - a > 1e-3 for a, b in zip(wrong_values, wrong_values[1:])), mistakes     # no two mistakes collide
