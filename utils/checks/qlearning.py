"""Checks for the reinforcement-learning lab (14): value_iteration, toy_text_to_arrays,
q_learning_update, epsilon_greedy and dqn_loss.

The references are known values and invariants: the grid world whose optimal values are
minus the Manhattan distance to the nearest terminal, the Bellman optimality residual,
exact policy evaluation by a linear solve, gymnasium's own transition tables
(``env.unwrapped.P``), hand-computed TD updates, and action frequencies over many draws of
a fixed NumPy generator for epsilon-greedy (statistics with tolerances, never one draw), and
a hand-computed minibatch for the DQN loss (tabular networks whose outputs are known).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = [
    "check_dqn_loss",
    "check_epsilon_greedy",
    "check_q_learning_update",
    "check_toy_text_to_arrays",
    "check_value_iteration",
    "grid_world",
    "reference_arrays",
    "reference_dqn_loss",
    "reference_value_iteration",
]

# FrozenLake's action order: 0 left, 1 down, 2 right, 3 up (CliffWalking uses 0 up, 1 right, 2 down, 3 left)
_MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))


def grid_world(rows: int = 3, cols: int = 4, terminals=((0, 0), (2, 3))):
    """The deterministic grid world of the lab: reward -1 per step, moves into an edge stay put.

    Args:
        rows, cols: grid size; state ``s = r * cols + c``.
        terminals: (row, col) cells that end the episode (absorbing, reward 0).

    Returns:
        (P, R): P float64[S, 4, S] transition probabilities, R float64[S, 4] expected rewards.
    """
    S = rows * cols
    P, R = np.zeros((S, 4, S)), np.zeros((S, 4))
    for r in range(rows):
        for c in range(cols):
            s = r * cols + c
            for a, (dr, dc) in enumerate(_MOVES):
                if (r, c) in terminals:
                    P[s, a, s] = 1.0
                    continue
                r2, c2 = min(max(r + dr, 0), rows - 1), min(max(c + dc, 0), cols - 1)
                P[s, a, r2 * cols + c2] = 1.0
                R[s, a] = -1.0
    return P, R


def reference_value_iteration(P, R, gamma: float, tol: float = 1e-10, max_iter: int = 100_000):
    """Synchronous value iteration; returns (V float64[S], greedy policy int64[S])."""
    P, R = np.asarray(P, dtype=np.float64), np.asarray(R, dtype=np.float64)
    V = np.zeros(P.shape[0])
    for _ in range(max_iter):
        V_new = (R + gamma * P @ V).max(axis=1)
        done = np.abs(V_new - V).max() < tol
        V = V_new
        if done:
            break
    return V, (R + gamma * P @ V).argmax(axis=1)


def reference_arrays(env):
    """(P float64[S, A, S], R float64[S, A]) from a toy-text env's ``env.unwrapped.P`` table;
    states entered by a terminating transition become absorbing with reward 0."""
    table = env.unwrapped.P
    S, A = env.observation_space.n, env.action_space.n
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    terminal = np.zeros(S, dtype=bool)
    for s, actions in table.items():
        for a, transitions in actions.items():
            for p, s_next, r, done in transitions:
                P[s, a, s_next] += p
                R[s, a] += p * r
                terminal[s_next] |= bool(done)
    P[terminal], R[terminal] = 0.0, 0.0
    for s in np.flatnonzero(terminal):
        P[s, :, s] = 1.0
    return P, R


#: seconds one value-iteration case may run before the check reports "did not stop"
TIME_LIMIT_S = 10.0


class _TooSlow(Exception):
    """Raised inside the student's code when a case runs past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the block with ``_TooSlow`` after ``seconds`` of wall-clock time.

    On POSIX in the main thread a ``SIGALRM`` timer does it (the handler runs between
    bytecodes, so a long NumPy call finishes first). Elsewhere (Windows, a worker thread, a
    real-time timer already running, e.g. pytest-timeout's) a
    ``sys.settrace`` hook checks the clock on every line of Python code, unless another tracer
    (a debugger, coverage) is active: then the block runs without a limit.
    """
    def expire(*_):
        raise _TooSlow(f"did not stop within {seconds:g} s")

    if (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0):        # never cancel someone else's timer
        try:
            previous = signal.signal(signal.SIGALRM, expire)
        except (ValueError, OSError):  # pragma: no cover - signals unavailable here
            previous = None
        if previous is not None:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                yield
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            return
    if sys.gettrace() is not None:
        yield
        return
    deadline = time.monotonic() + seconds

    def tracer(frame, event, arg):
        if time.monotonic() > deadline:
            sys.settrace(None)
            expire()
        return tracer

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(None)


def _random_mdp(S: int, A: int, seed: int):
    rng = np.random.default_rng(seed)
    P = rng.random((S, A, S)) ** 3                       # uneven, dense transition rows
    P /= P.sum(axis=2, keepdims=True)
    return P, rng.normal(size=(S, A))


def _as_v_pi(out, S):
    """Error message, or None when ``out`` is (V float[S], policy int[S])."""
    if not isinstance(out, tuple | list) or len(out) != 2:
        return f"expected a tuple (V, policy), got {type(out).__name__}"
    V, pi = (np.asarray(v) for v in out)
    if V.shape != (S,) or not np.issubdtype(V.dtype, np.floating):
        return f"V: expected a float array of shape ({S},), got {V.dtype} {V.shape}"
    if pi.shape != (S,) or not np.issubdtype(pi.dtype, np.integer):
        return f"policy: expected an integer array of shape ({S},) (use argmax), got {pi.dtype} {pi.shape}"
    return None


def _policy_is_greedy(P, R, gamma, pi, V_star, atol):
    Q = R + gamma * P @ V_star
    chosen = Q[np.arange(len(pi)), pi]
    bad = np.flatnonzero(chosen < Q.max(axis=1) - atol)
    if len(bad):
        s = int(bad[0])
        return (f"policy[{s}] = {int(pi[s])} is not greedy: Q*[{s}] = {np.round(Q[s], 4).tolist()} "
                f"({len(bad)} state(s) wrong)")
    return None


def _value_iteration_diagnosis(P, R, gamma, V, V_star, atol) -> str:
    """Why V is wrong, as ' (advice)', when a typical mistake explains it; else ''."""
    axis = "does P @ V sum over s', the last axis of P (each row P[s, a] is a distribution over next states)"
    with np.errstate(all="ignore"):
        finite = np.isfinite(V).all()
        big = not finite or np.abs(V).max() > 1e3 * (np.abs(V_star).max() + 1)
        if gamma < 1:
            bound = np.abs(R).max() / (1 - gamma)                   # no policy collects more than this
            too_large = not finite or np.abs(V).max() > bound * (1 + 1e-6) + atol
            V_undiscounted = reference_value_iteration(P, R, 1.0, tol=1e-10, max_iter=10_000)[0]
            if np.allclose(V, V_undiscounted, atol=10 * atol, rtol=0):
                return " (V is the undiscounted value: is P @ V multiplied by gamma?)"
            if too_large:
                what = f"|V| exceeds max|R| / (1 - gamma) = {bound:.4g}, more than any policy can collect"
                if P.shape[0] == 1:                                 # one state: the axis cannot be wrong
                    return f" ({what}: is P @ V multiplied by gamma?)"
                return f" ({what}: is P @ V multiplied by gamma? {axis}?)"
        if big:
            return f" (V blows up: {axis}, and is it multiplied by gamma?)"
    return ""


@tiered
def check_value_iteration(value_iteration: Callable) -> bool:
    """Check ``value_iteration(P, R, gamma, tol)`` -> (V, greedy policy)."""

    timed_out = []        # after one case runs out of time, skip the rest: each would wait TIME_LIMIT_S too

    def case(P, R, gamma, tol, atol, V_known=None):
        def test(fn):
            if timed_out:
                return f"not run: an earlier case ran past the {TIME_LIMIT_S:g} s time limit (fix that one first)"
            try:
                with np.errstate(all="ignore"), _time_limit(TIME_LIMIT_S):
                    out = fn(P.copy(), R.copy(), gamma, tol)
            except _TooSlow as exc:
                timed_out.append(True)
                advice = [] if P.shape[0] == 1 else ["does P @ V sum over s', the last axis of P?"]
                advice += ["is P @ V multiplied by gamma?"] if gamma < 1 else []      # one state: only gamma
                return (f"{exc}: V diverges or oscillates, so max|V_new - V| never falls below tol; "
                        f"{' '.join(advice)} (a safety cap such as 100,000 sweeps is good practice)")
            if (msg := _as_v_pi(out, P.shape[0])):
                return msg
            V, pi = np.asarray(out[0], dtype=np.float64), np.asarray(out[1])
            V_star = reference_value_iteration(P, R, gamma, tol=1e-12)[0] if V_known is None else V_known
            if (msg := compare_values(V_star, V, atol=atol, rtol=0, path="V")):
                return msg + _value_iteration_diagnosis(P, R, gamma, V, V_star, atol)
            residual = np.abs((R + gamma * P @ V).max(axis=1) - V).max()
            if residual > 10 * atol:
                return f"Bellman optimality residual max|max_a(R + gamma P V) - V| = {residual:.2e}: iterate longer"
            return _policy_is_greedy(P, R, gamma, pi, V_star, atol=10 * atol)
        return test

    P_grid, R_grid = grid_world()
    rows, cols = np.divmod(np.arange(12), 4)
    manhattan = np.minimum(rows + cols, (2 - rows) + (3 - cols)).astype(np.float64)
    P_big, R_big = grid_world(5, 6, terminals=((0, 0), (4, 5), (2, 2)))
    r5, c6 = np.divmod(np.arange(30), 6)
    d_big = np.min([abs(r5 - tr) + abs(c6 - tc) for tr, tc in ((0, 0), (4, 5), (2, 2))], axis=0).astype(np.float64)
    P_one, R_one = np.ones((1, 2, 1)), np.array([[1.0, 2.0]])       # one state, two self-loops
    P_rand, R_rand = _random_mdp(7, 3, seed=0)
    P_rand2, R_rand2 = _random_mdp(20, 5, seed=1)
    cases = [
        Case("3x4 grid world, gamma = 1: V = -Manhattan distance to the nearest terminal",
             test=case(P_grid, R_grid, 1.0, 1e-10, 1e-8, V_known=-manhattan)),
        Case("5x6 grid world with three terminals, gamma = 1", test=case(P_big, R_big, 1.0, 1e-10, 1e-8,
                                                                         V_known=-d_big)),
        Case("one state, rewards (1, 2), gamma = 0.9: V = 2 / (1 - 0.9) = 20",
             test=case(P_one, R_one, 0.9, 1e-10, 1e-6, V_known=np.array([20.0]))),
        Case("random MDP (S = 7, A = 3), gamma = 0.9", test=case(P_rand, R_rand, 0.9, 1e-10, 1e-7)),
        Case("random MDP (S = 20, A = 5), gamma = 0.99", test=case(P_rand2, R_rand2, 0.99, 1e-10, 1e-6)),
        Case("grid world with gamma = 0.5 (discounting matters)", test=case(P_grid, R_grid, 0.5, 1e-10, 1e-8)),
    ]
    return run_check(
        "value_iteration(P, R, gamma, tol)", value_iteration, cases,
        hint='apply the Bellman optimality backup to V until it stops changing; the policy is greedy with respect to the final V',
        solution="start from V = 0 and repeat Q = R + gamma * P @ V (shape (S, A): P @ V sums over s'), "
             "V_new = Q.max(axis=1), until max|V_new - V| < tol; return V and Q.argmax(axis=1) "
             "computed from the final V",
    )


def _p_hint(P_want, P) -> str:
    """Where the first wrong row of P is: a terminal state (not absorbing) or an ordinary one."""
    S = P_want.shape[0]
    wrong = np.flatnonzero((np.abs(P - P_want) > 1e-6).any(axis=(1, 2)))
    terminal = (P_want[np.arange(S), :, np.arange(S)] == 1).all(axis=1)   # absorbing under every action
    made_absorbing = wrong[~terminal[wrong] & (np.abs(P[wrong, :, wrong] - 1) < 1e-6).all(axis=1)]
    if len(made_absorbing):
        s = int(made_absorbing[0])
        return (f" (state {s} is not terminal but your P makes it absorbing: terminal states are the s_next of a "
                "terminated transition, not the state it starts from)")
    if terminal[wrong].any():
        s = int(wrong[terminal[wrong]][0])
        return (f" (state {s} is terminal: make terminal states absorbing, P[s, :, :] = 0 and P[s, :, s] = 1, "
                "with reward 0)")
    s = int(wrong[0])
    a = int(np.flatnonzero((np.abs(P[s] - P_want[s]) > 1e-6).any(axis=1))[0])
    return f" (first wrong row: state {s}, action {a}; compare with env.unwrapped.P[{s}][{a}])"


@tiered
def check_toy_text_to_arrays(toy_text_to_arrays: Callable) -> bool:
    """Check ``toy_text_to_arrays(env)`` -> (P (S, A, S), R (S, A)) against gymnasium's tables."""
    import gymnasium as gym

    def case(make, start=None, V_start=None):
        def test(fn):
            env = make()
            out = fn(env)
            if not isinstance(out, tuple | list) or len(out) != 2:
                return f"expected a tuple (P, R), got {type(out).__name__}"
            P_want, R_want = reference_arrays(env)
            S, A = R_want.shape
            P, R = (np.asarray(v) for v in out)
            if P.shape != (S, A, S) or R.shape != (S, A):
                return f"shapes: expected P {(S, A, S)} and R {(S, A)}, got {P.shape} and {R.shape}"
            sums = P.astype(np.float64).sum(axis=2)
            if not np.allclose(sums, 1.0, atol=1e-6):
                s, a = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
                return (f"P[{s}, {a}] sums to {sums[s, a]:.4g}, not 1 (several transitions can lead to the same "
                        f"state: add their probabilities, P[s, a, s'] += p)")
            # atol 1e-6: float32 arrays (the brief names no dtype) are accepted too
            if (msg := compare_values(P_want, P.astype(np.float64), atol=1e-6, rtol=0, path="P")):
                return msg + _p_hint(P_want, P.astype(np.float64))
            if (msg := compare_values(R_want, R.astype(np.float64), atol=1e-6, rtol=0, path="R")):
                return msg + " (R[s, a] is the expected reward: sum of p * r over the transitions)"
            if start is not None:
                V = reference_value_iteration(P.astype(np.float64), R.astype(np.float64), 1.0, tol=1e-9)[0]
                if abs(V[start] - V_start) > 1e-6:
                    return f"value iteration on your arrays gives V[{start}] = {V[start]:.4g}, expected {V_start}"
            return None
        return test

    cases = [
        Case("FrozenLake-v1 4x4, slippery (repeated next states add up)",
             test=case(lambda: gym.make("FrozenLake-v1", is_slippery=True))),
        Case("FrozenLake-v1 4x4, not slippery", test=case(lambda: gym.make("FrozenLake-v1", is_slippery=False))),
        Case("FrozenLake-v1 with a 2x4 map (S = 8 read from the env)",
             test=case(lambda: gym.make("FrozenLake-v1", desc=["SFFH", "FHFG"], is_slippery=True))),
        Case("FrozenLake-v1 8x8, slippery", test=case(lambda: gym.make("FrozenLake-v1", map_name="8x8"))),
        Case("CliffWalking-v1: -100 for the cliff; goal absorbing, so V[start] = -13 at gamma = 1",
             test=case(lambda: gym.make("CliffWalking-v1"), start=36, V_start=-13.0)),
    ]
    return run_check(
        "toy_text_to_arrays(env)", toy_text_to_arrays, cases,
        hint='read the transition lists of every (state, action): probabilities add up per next state, rewards are expected values, and terminal states become absorbing with reward 0',
        solution="S, A = env.observation_space.n, env.action_space.n; loop over env.unwrapped.P[s][a], a list of "
             "(p, s_next, r, terminated): P[s, a, s_next] += p, R[s, a] += p * r, remember s_next as terminal "
             "when terminated; finally make terminal states absorbing (P[s, :, :] = 0, P[s, :, s] = 1, R[s] = 0)",
    )


@tiered
def check_q_learning_update(q_learning_update: Callable) -> bool:
    """Check ``q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)`` with hand-computed values."""
    Q0 = np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 5.0]])

    def case(Q, s, a, r, s_next, terminated, alpha, gamma, td_want, Q_sa_want):
        def test(fn):
            Q_in = np.array(Q, dtype=np.float64)
            Q_before = Q_in.copy()
            td = fn(Q_in, s, a, r, s_next, terminated, alpha, gamma)
            if isinstance(td, np.ndarray) and td.ndim > 0:
                return f"expected the TD error (a number), got an array of shape {td.shape}"
            if (msg := compare_values(float(td_want), td, atol=1e-9, rtol=1e-9, path="returned TD error")):
                return msg + " (the error before the update: target - Q[s, a])"
            Q_want = Q_before.copy()
            Q_want[s, a] = Q_sa_want
            if np.array_equal(Q_in, Q_before):
                return "Q was not changed: update the array in place (Q[s, a] += ...)"
            return compare_values(Q_want, Q_in, atol=1e-9, rtol=1e-9, path="Q after the update")
        return test

    cases = [
        Case("zeros, r = 1, alpha = 0.5: TD error 1, Q[0, 1] = 0.5",
             test=case(np.zeros((3, 2)), 0, 1, 1.0, 1, False, 0.5, 0.9, 1.0, 0.5)),
        Case("bootstrap with max_a' Q(s', a'): target -1 + 0.9 * 5 = 3.5",
             test=case(Q0, 0, 0, -1.0, 2, False, 0.5, 0.9, 2.5, 2.25)),
        Case("terminated: no bootstrap, target = r = -1", test=case(Q0, 0, 0, -1.0, 2, True, 0.5, 0.9, -2.0, 0.0)),
        Case("self-loop s = s' = 1, a = argmax: target 1 + 0.9 * 3", test=case(Q0, 1, 0, 1.0, 1, False, 0.1, 0.9,
                                                                               0.7, 3.07)),
        Case("gamma = 1, alpha = 1: Q[s, a] becomes the target", test=case(Q0, 2, 0, 0.5, 1, False, 1.0, 1.0,
                                                                           3.5, 3.5)),
        Case("gamma = 0: only the reward counts", test=case(Q0, 1, 1, 2.0, 0, False, 0.25, 0.0, 3.0, -0.25)),
    ]
    return run_check(
        "q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)", q_learning_update, cases,
        hint='move Q[s, a] towards the TD target r + gamma max Q[s_next] (just r when the episode ended), by a fraction alpha, in place',
        solution="target = r if terminated else r + gamma * Q[s_next].max(); td = target - Q[s, a]; "
             "Q[s, a] += alpha * td (in place); return td (computed before the update)",
    )


def _frequencies(fn, q_row, epsilon, n, seed):
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(q_row))
    for _ in range(n):
        a = fn(np.array(q_row, dtype=np.float64), epsilon, rng)
        if isinstance(a, bool) or not isinstance(a, int | np.integer) or not 0 <= int(a) < len(q_row):
            return None, f"expected an action index in 0..{len(q_row) - 1} (an int), got {a!r} (argmax, not max)"
        counts[int(a)] += 1
    return counts / n, None


def _epsilon_greedy_diagnosis(q_row, epsilon, freq, tol) -> str:
    """The typical mistake whose action probabilities the frequencies match, as ' (advice)', or ''."""
    q = np.asarray(q_row, dtype=np.float64)
    A, best = len(q), q == q.max()
    first = np.arange(A) == np.flatnonzero(best)[0]
    if best.sum() > 1 and np.abs(freq - (epsilon / A + (1 - epsilon) * first)).max() <= tol:
        return " (tied best actions: always the first one; choose among all tied actions at random)"
    if 0 < epsilon and best.sum() < A:
        others = ~best
        excluding = epsilon * others / others.sum() + (1 - epsilon) * best / best.sum()
        if np.abs(freq - excluding).max() <= tol:
            where = "with epsilon = 1 the greedy action is never taken" if epsilon == 1 else \
                f"the greedy action gets only 1 - epsilon = {1 - epsilon:g}"
            return f" ({where}: a random action is any of the {A} actions, the greedy one included)"
    return ""


@tiered
def check_epsilon_greedy(epsilon_greedy: Callable) -> bool:
    """Check ``epsilon_greedy(Q_row, epsilon, rng)`` by action frequencies over many draws."""

    def exact(q_row, epsilon):
        q = np.asarray(q_row, dtype=np.float64)
        best = q == q.max()
        return epsilon / len(q) + (1 - epsilon) * best / best.sum()

    def case(q_row, epsilon, n, tol, seed):
        def test(fn):
            freq, msg = _frequencies(fn, q_row, epsilon, n, seed)
            if msg:
                return msg
            want = exact(q_row, epsilon)
            err = np.abs(freq - want)
            if err.max() > tol:
                msg = (f"action frequencies over {n} draws {np.round(freq, 3).tolist()}, expected about "
                       f"{np.round(want, 3).tolist()} (tolerance {tol})")
                return msg + _epsilon_greedy_diagnosis(q_row, epsilon, freq, tol)
            return None
        return test

    def uses_rng(fn):
        draws = []
        for _ in range(2):
            rng = np.random.default_rng(123)
            np.random.seed(len(draws) * 1000 + 7)             # a different global state each time
            draws.append([int(fn(np.zeros(5), 0.5, rng)) for _ in range(200)])
        if draws[0] != draws[1]:
            return "two runs with the same generator gave different actions: draw only from `rng`"
        return None

    cases = [
        Case("epsilon = 0, unique best: always the argmax", test=case([0.1, 0.5, 0.2], 0.0, 300, 0.0, 0)),
        Case("epsilon = 0, negative values: argmax is action 1", test=case([-5.0, -2.0, -3.0], 0.0, 300, 0.0, 1)),
        Case("epsilon = 0, tie between actions 1 and 2: each about half the time",
             test=case([1.0, 3.0, 3.0, 0.0], 0.0, 4000, 0.04, 2)),
        Case("epsilon = 1: uniform over all 4 actions (the greedy one included)",
             test=case([0.0, 0.0, 1.0, 0.0], 1.0, 8000, 0.03, 3)),
        Case("epsilon = 0.3: greedy action 0.7 + 0.3 / 4 = 0.775",
             test=case([0.0, 0.0, 1.0, 0.0], 0.3, 10000, 0.02, 4)),
        Case("epsilon = 0.2 with a three-way tie", test=case([2.0, 2.0, -1.0, 2.0, 0.0], 0.2, 10000, 0.025, 5)),
        Case("a single action: always 0", test=case([4.2], 0.5, 100, 0.0, 6)),
        Case("deterministic given the generator (no np.random / random module)", test=uses_rng),
    ]
    return run_check(
        "epsilon_greedy(Q_row, epsilon, rng)", epsilon_greedy, cases,
        hint='explore with probability epsilon (any action), otherwise exploit, breaking ties among the best actions at random',
        solution="if rng.random() < epsilon: return int(rng.integers(len(Q_row))) (any action, the greedy one "
             "included); else best = np.flatnonzero(Q_row == Q_row.max()) and return int(rng.choice(best))",
    )


def reference_dqn_loss(q_net, target_net, batch, gamma):
    """Mean Huber loss between Q(s, a) and r + gamma (1 - terminated) max_a' Q_target(s', a')."""
    import torch
    import torch.nn.functional as F

    states, actions, rewards, next_states, terminated = batch
    q_taken = q_net(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_net(next_states).max(dim=1).values
    return F.smooth_l1_loss(q_taken, target)


def _table_net(table):
    """A linear network without bias whose output on the one-hot state s is table[s]."""
    import torch

    net = torch.nn.Linear(len(table), len(table[0]), bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(table, dtype=torch.float32).T)
    return net


#: a hand-computed minibatch: states 0-3 one-hot, Q tables of the online and the target network
_Q_ONLINE = [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [0.0, 0.0]]
_Q_TARGET = [[0.0, 4.0], [2.0, 1.0], [-1.0, -2.0], [6.0, 3.0]]
# (s, a, r, s', terminated): targets 1 + 0.9 * 2 = 2.8; 0 (terminal, not 0.9 * 6 = 5.4); -1 + 0.9 * 4 = 2.6;
# 2 + 0.9 * (-1) = 1.1. Errors Q(s, a) - target: -0.8, 0.5, 0.4, -1.1 -> Huber 0.32, 0.125, 0.08, 0.6.
# The mistakes in _dqn_mistakes that change the loss here all give different values (the sum 1.125 is not the
# unmasked loss 1.35); the max over all actions equals Q(s, a) here, so the random-network cases catch it.
_HAND_BATCH = [(0, 1, 1.0, 1, 0.0), (1, 0, 0.0, 3, 1.0), (2, 0, -1.0, 0, 0.0), (3, 1, 2.0, 2, 0.0)]
_HAND_LOSS = (0.32 + 0.125 + 0.08 + 0.6) / 4


def _hand_batch():
    import torch

    s, a, r, s2, d = zip(*_HAND_BATCH)
    eye = torch.eye(4)
    return (eye[list(s)], torch.tensor(a), torch.tensor(r), eye[list(s2)], torch.tensor(d))


def _dqn_mistakes(q_net, target_net, batch, gamma):
    """Loss values of the typical mistakes, keyed by the advice that names each one."""
    import torch
    import torch.nn.functional as F

    states, actions, rewards, next_states, terminated = batch
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # the (B, 1) vs (B,) mistake warns about broadcasting
        q_all, q_next, q_online_next = q_net(states), target_net(next_states), q_net(next_states)
        q_taken = q_all.gather(1, actions[:, None]).squeeze(1)
        target = rewards + gamma * (1 - terminated) * q_next.max(dim=1).values
        return {
            "summed over the batch: L is the mean over the batch, not the sum; F.smooth_l1_loss averages by "
            "default":
                F.smooth_l1_loss(q_taken, target, reduction="sum"),
            "Q(s, a) has shape (B, 1): squeeze(1) so it matches the (B,) target; a (B, 1) and a (B,) tensor "
            "broadcast to (B, B)":
                F.smooth_l1_loss(q_taken[:, None], target),
            "a terminal transition still bootstraps: multiply the max by (1 - terminated)":
                F.smooth_l1_loss(q_taken, rewards + gamma * q_next.max(dim=1).values),
            "the max over next actions comes from the online network: use target_net(next_states)":
                F.smooth_l1_loss(q_taken, rewards + gamma * (1 - terminated) * q_online_next.max(dim=1).values),
            "this is the squared error (MSE): DQN here uses the Huber loss, F.smooth_l1_loss":
                F.mse_loss(q_taken, target),
            "Q(s, a) is gathered along the wrong dimension: gather(1, actions[:, None]) picks one action per row":
                F.smooth_l1_loss(q_all.gather(0, actions[:, None]).squeeze(1), target),
            "this is the max over all actions, not the action taken: gather Q(s, a) with the batch's actions":
                F.smooth_l1_loss(q_all.max(dim=1).values, target),
        }


@tiered
def check_dqn_loss(dqn_loss: Callable) -> bool:
    """Check ``dqn_loss(q_net, target_net, batch, gamma)`` on a hand-computed minibatch and random networks."""
    import torch

    def call(fn, q_net, target_net, batch, gamma):
        out = fn(q_net, target_net, tuple(t.clone() for t in batch), gamma)
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return None, f"expected a scalar tensor (the mean loss over the batch), got {shape}"
        return out, None

    def value_case(make, gamma, want=None):
        def test(fn):
            q_net, target_net, batch = make()
            loss, msg = call(fn, q_net, target_net, batch, gamma)
            if msg:
                return msg
            expected = reference_dqn_loss(q_net, target_net, batch, gamma).item() if want is None else want
            if (msg := compare_values(expected, loss.item(), atol=1e-5, rtol=1e-5, path="loss")):
                for advice, wrong in _dqn_mistakes(q_net, target_net, batch, gamma).items():
                    if abs(wrong.item() - loss.item()) < 1e-5:
                        return f"{msg} ({advice})"
            return msg
        return test

    def grad_case(fn):
        q_net, target_net, batch = _hand_batch_nets()
        loss, msg = call(fn, q_net, target_net, batch, 0.9)
        if msg:
            return msg
        if not loss.requires_grad:
            return "the loss does not require grad: compute Q(s, a) outside torch.no_grad() (only the target inside)"
        loss.backward()
        if target_net.weight.grad is not None and target_net.weight.grad.abs().sum() > 0:
            return ("a gradient reached the target network: compute the target inside torch.no_grad() (or "
                    ".detach() it), so the regression target stays fixed")
        q_ref = _table_net(_Q_ONLINE)
        reference_dqn_loss(q_ref, _table_net(_Q_TARGET), _hand_batch(), 0.9).backward()
        return compare_values(q_ref.weight.grad, q_net.weight.grad, atol=1e-6, rtol=1e-5,
                              path="gradient of the loss w.r.t. q_net.weight")

    def _hand_batch_nets():
        return _table_net(_Q_ONLINE), _table_net(_Q_TARGET), _hand_batch()

    def random_nets(batch_size, seed):
        def make():
            with torch.random.fork_rng(devices=[]):                 # leave the notebook's global RNG alone
                torch.manual_seed(seed)
                q_net, target_net = (torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
                                                         torch.nn.Linear(16, 3)) for _ in range(2))
            g = torch.Generator().manual_seed(seed)
            batch = (torch.randn(batch_size, 4, generator=g), torch.randint(0, 3, (batch_size,), generator=g),
                     torch.randn(batch_size, generator=g), torch.randn(batch_size, 4, generator=g),
                     (torch.rand(batch_size, generator=g) < 0.3).float())
            return q_net, target_net, batch
        return make

    cases = [
        Case("hand-computed batch of 4, gamma = 0.9: loss (0.32 + 0.125 + 0.08 + 0.6) / 4 = 0.28125",
             test=value_case(_hand_batch_nets, 0.9, want=_HAND_LOSS)),
        Case("the same batch, gamma = 0: targets are the rewards", test=value_case(_hand_batch_nets, 0.0)),
        Case("random networks with 3 actions, batch 32, 30% terminal, gamma = 0.99",
             test=value_case(random_nets(32, 0), 0.99)),
        Case("random networks, batch 5, gamma = 0.5", test=value_case(random_nets(5, 1), 0.5)),
        Case("gradient reaches q_net only, not target_net", test=grad_case),
        device_case(inputs=lambda: (*_hand_batch_nets()[:2], _hand_batch(), 0.9), name="batch"),
    ]
    return run_check(
        "dqn_loss(q_net, target_net, batch, gamma)", dqn_loss, cases,
        hint="regress Q(s, a) of the action taken onto a fixed TD target built from the target network, with no "
             "bootstrap after a terminal transition",
        solution="states, actions, rewards, next_states, terminated = batch; q_taken = q_net(states).gather(1, "
             "actions[:, None]).squeeze(1); with torch.no_grad(): target = rewards + gamma * (1 - terminated) * "
             "target_net(next_states).max(dim=1).values; return F.smooth_l1_loss(q_taken, target)",
    )
