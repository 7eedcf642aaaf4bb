"""The lab-11 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
from conftest import check_verdict as _verdict

from utils.checks import rnn as checks


def rnn_loop(x, h0, W_xh, W_hh, b):
    h, states = h0, []
    for x_t in x:
        h = torch.tanh(x_t @ W_xh.T + h @ W_hh.T + b)
        states.append(h)
    return torch.stack(states)


def rnn_einsum(x, h0, W_xh, W_hh, b):
    """Correct, written differently: input projections for all steps at once, preallocated output."""
    xs = torch.einsum("tnd,hd->tnh", x, W_xh) + b
    out = x.new_empty(x.shape[0], x.shape[1], W_hh.shape[0])
    h = h0
    for t in range(x.shape[0]):
        h = torch.tanh(xs[t] + torch.einsum("nk,hk->nh", h, W_hh))
        out[t] = h
    return out


def test_rnn_forward_check(capsys):
    assert _verdict(checks.check_rnn_forward, checks.reference_rnn_forward, capsys)
    assert _verdict(checks.check_rnn_forward, rnn_loop, capsys)
    assert _verdict(checks.check_rnn_forward, rnn_einsum, capsys)

    def transposed_hh(x, h0, W_xh, W_hh, b):
        return rnn_loop(x, h0, W_xh, W_hh.T, b)

    def with_h0(x, h0, W_xh, W_hh, b):
        return torch.cat([h0[None], rnn_loop(x, h0, W_xh, W_hh, b)])

    def last_only(x, h0, W_xh, W_hh, b):
        return rnn_loop(x, h0, W_xh, W_hh, b)[-1]

    def relu(x, h0, W_xh, W_hh, b):
        h, states = h0, []
        for x_t in x:
            h = torch.relu(x_t @ W_xh.T + h @ W_hh.T + b)
            states.append(h)
        return torch.stack(states)

    def ignores_h0(x, h0, W_xh, W_hh, b):
        return rnn_loop(x, torch.zeros_like(h0), W_xh, W_hh, b)

    for wrong in (transposed_hh, with_h0, last_only, relu, ignores_h0):
        assert not _verdict(checks.check_rnn_forward, wrong, capsys), wrong.__name__


def lstm_ok(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    i, f, g, o = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_split_weights(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    """Correct, written differently: one weight slice per gate, F.linear."""
    H = h.shape[1]
    pre = [torch.nn.functional.linear(x, weight_ih[k * H:(k + 1) * H], bias_ih[k * H:(k + 1) * H])
           + torch.nn.functional.linear(h, weight_hh[k * H:(k + 1) * H], bias_hh[k * H:(k + 1) * H])
           for k in range(4)]
    i, f, o = (1 / (1 + torch.exp(-pre[k])) for k in (0, 1, 3))
    c_new = f * c + i * torch.tanh(pre[2])
    return (o * torch.tanh(c_new), c_new)


def no_bias_hh(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return lstm_ok(x, h, c, w_ih, w_hh, b_ih, torch.zeros_like(b_hh))


def h_from_old_c(x, h, c, w_ih, w_hh, b_ih, b_hh):
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c_new


def test_lstm_cell_check(capsys):
    assert _verdict(checks.check_lstm_cell, checks.reference_lstm_cell, capsys)
    assert _verdict(checks.check_lstm_cell, lstm_ok, capsys)
    assert _verdict(checks.check_lstm_cell, lstm_split_weights, capsys)

    def order_ifog(x, h, c, w_ih, w_hh, b_ih, b_hh):
        i, f, o, g = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def sigmoid_g(x, h, c, w_ih, w_hh, b_ih, b_hh):
        i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.sigmoid(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def h_without_tanh(x, h, c, w_ih, w_hh, b_ih, b_hh):
        i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * c, c

    def returns_c_first(*args):
        h, c = lstm_ok(*args)
        return c, h

    for wrong in (order_ifog, no_bias_hh, h_from_old_c, sigmoid_g, h_without_tanh, returns_c_first):
        assert not _verdict(checks.check_lstm_cell, wrong, capsys), wrong.__name__


def clip_ok(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in params))
    factor = min(1.0, max_norm / (float(total) + 1e-6))
    for p in params:
        p.grad.mul_(factor)
    return total


def clip_flat(parameters, max_norm):
    """Correct, written differently: one flat vector, no epsilon, a Python float returned."""
    params = [p for p in parameters if p.grad is not None]
    total = float(torch.cat([p.grad.flatten() for p in params]).norm())
    if total > max_norm:
        for p in params:
            p.grad *= max_norm / total
    return total


def always_rescale(parameters, max_norm):  # also scales gradients whose norm is below max_norm up
    params = [p for p in parameters if p.grad is not None]
    total = float(torch.cat([p.grad.flatten() for p in params]).norm())
    for p in params:
        p.grad.mul_(max_norm / total)
    return total


def test_clip_grad_norm_check(capsys):
    assert _verdict(checks.check_clip_grad_norm, clip_ok, capsys)
    assert _verdict(checks.check_clip_grad_norm, clip_flat, capsys)

    def per_parameter(parameters, max_norm):
        total = 0.0
        for p in parameters:
            if p.grad is not None:
                n = float(p.grad.norm())
                total += n ** 2
                if n > max_norm:
                    p.grad.mul_(max_norm / n)
        return total ** 0.5

    def sum_of_norms(parameters, max_norm):
        params = [p for p in parameters if p.grad is not None]
        total = float(sum(p.grad.norm() for p in params))
        for p in params:
            p.grad.mul_(min(1.0, max_norm / total))
        return total

    def not_in_place(parameters, max_norm):
        params = [p for p in parameters if p.grad is not None]
        total = float(torch.cat([p.grad.flatten() for p in params]).norm())
        _ = [p.grad * min(1.0, max_norm / total) for p in params]
        return total

    def returns_clipped_norm(parameters, max_norm):
        total = clip_flat(parameters, max_norm)
        return min(total, max_norm)

    def generator_consumed_twice(parameters, max_norm):
        total = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in parameters if p.grad is not None)))
        for p in parameters:
            if p.grad is not None:
                p.grad.mul_(min(1.0, max_norm / total))
        return total

    for wrong in (per_parameter, always_rescale, sum_of_norms, not_in_place, returns_clipped_norm,
                  generator_consumed_twice):
        assert not _verdict(checks.check_clip_grad_norm, wrong, capsys), wrong.__name__


def test_clip_grad_norm_names_a_consumed_generator(capsys):
    def generator_consumed_twice(parameters, max_norm):
        total = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in parameters if p.grad is not None)))
        for p in parameters:                                   # empty when parameters is a generator
            if p.grad is not None:
                p.grad.mul_(min(1.0, max_norm / total))
        return total

    checks.check_clip_grad_norm(generator_consumed_twice)
    out = capsys.readouterr().out
    assert "✗ parameters given as a generator" in out and "a generator can be iterated only once" in out
    assert "one common factor" not in out                      # the factor was common: only the generator was empty

    def per_parameter(parameters, max_norm):                   # a scaling mistake keeps the scaling hint
        params = [p for p in parameters if p.grad is not None]
        for p in params:
            p.grad.mul_(min(1.0, max_norm / float(p.grad.norm())))
        return float(torch.cat([p.grad.flatten() for p in params]).norm())

    checks.check_clip_grad_norm(per_parameter)
    assert "a generator can be iterated only once" not in capsys.readouterr().out


def test_clip_grad_norm_tensor_factor_passes_without_a_probe_note(capsys, monkeypatch):
    """The lab's solution computes the factor as a tensor: the device probe decides it, no 'undecided' note."""
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")

    def clip_tensor_factor(parameters, max_norm):
        params = [p for p in parameters if p.grad is not None]
        total = torch.sqrt(sum(p.grad.pow(2).sum() for p in params))
        factor = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(factor)
        return total

    assert _verdict(checks.check_clip_grad_norm, clip_tensor_factor, capsys)
    checks.check_clip_grad_norm(clip_tensor_factor)
    assert "undecided" not in capsys.readouterr().out


def test_rnn_forward_names_an_untransposed_w_hh(capsys):
    checks.check_rnn_forward(lambda x, h0, W_xh, W_hh, b: rnn_loop(x, h0, W_xh, W_hh.T, b))
    assert "W_hh is used untransposed" in capsys.readouterr().out
    checks.check_rnn_forward(lambda x, h0, W_xh, W_hh, b: rnn_loop(x, torch.zeros_like(h0), W_xh, W_hh, b))
    assert "untransposed" not in capsys.readouterr().out


def test_the_library_itself_does_not_pass(capsys):
    """torch.rnn_tanh, torch.lstm_cell and clip_grad_norm_ are the library's answers, not the exercise."""
    def rnn_library(x, h0, W_xh, W_hh, b):
        out, _ = torch.rnn_tanh(x, h0[None], [W_xh, W_hh, b, torch.zeros_like(b)], True, 1, 0.0, False, False, False)
        return out

    def lstm_library(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
        return torch.lstm_cell(x, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)

    def clip_library(parameters, max_norm):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    for check, fn in ((checks.check_rnn_forward, rnn_library), (checks.check_lstm_cell, lstm_library),
                      (checks.check_clip_grad_norm, clip_library)):
        assert not _verdict(check, fn, capsys), fn.__name__
        check(fn)
        assert "is the library's answer" in capsys.readouterr().out, fn.__name__
    # outside the checks the library works again
    assert torch.equal(rnn_library(*_rnn_inputs()), rnn_library(*_rnn_inputs()))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 4.0)
    assert abs(float(torch.nn.utils.clip_grad_norm_([p], 1.0)) - 48 ** 0.5) < 1e-5


def _rnn_inputs():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(4, 2, 3, generator=g), torch.randn(2, 5, generator=g), torch.randn(5, 3, generator=g),
            torch.randn(5, 5, generator=g), torch.randn(5, generator=g))


def sample_ok(logits, temperature, generator):
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(logits.device)


def sample_log_space(logits, temperature, generator):
    """Correct, written differently: log-probabilities in float64, exponentiated, then one draw per row."""
    logp = torch.nn.functional.log_softmax(logits.detach().cpu().double() / temperature, dim=-1)
    return torch.multinomial(logp.exp(), num_samples=1, generator=generator).squeeze(1).to(logits.device)


def test_sample_with_temperature_check(capsys):
    assert _verdict(checks.check_sample_with_temperature, sample_ok, capsys)
    assert _verdict(checks.check_sample_with_temperature, sample_log_space, capsys)

    def times_t(logits, temperature, generator):
        return sample_ok(logits * temperature ** 2, temperature, generator)          # softmax(logits * T)

    def softmax_then_divide(logits, temperature, generator):
        probs = torch.softmax(logits, dim=-1) / temperature                          # multinomial renormalises
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    def global_rng(logits, temperature, generator):
        return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)[:, 0]

    def greedy(logits, temperature, generator):
        return logits.argmax(dim=-1)

    def probabilities(logits, temperature, generator):
        return torch.softmax(logits / temperature, dim=-1)

    def keeps_sample_dim(logits, temperature, generator):
        return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)

    def gumbel_global(logits, temperature, generator):                               # right law, wrong generator
        u = torch.rand(logits.shape).clamp_min(1e-12)
        return (logits / temperature - torch.log(-torch.log(u))).argmax(dim=-1)

    for wrong in (times_t, softmax_then_divide, global_rng, greedy, probabilities, keeps_sample_dim, gumbel_global):
        assert not _verdict(checks.check_sample_with_temperature, wrong, capsys), wrong.__name__


def test_sample_with_temperature_names_the_mistake(capsys):
    def times_t(logits, temperature, generator):
        return sample_ok(logits * temperature ** 2, temperature, generator)

    def softmax_then_divide(logits, temperature, generator):
        return torch.multinomial(torch.softmax(logits, dim=-1) / temperature, 1, generator=generator)[:, 0]

    def global_rng(logits, temperature, generator):
        return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)[:, 0]

    checks.check_sample_with_temperature(times_t)
    assert "softmax(logits * T): divide by T" in capsys.readouterr().out
    checks.check_sample_with_temperature(softmax_then_divide)
    assert "as if T = 1" in capsys.readouterr().out
    checks.check_sample_with_temperature(global_rng)
    out = capsys.readouterr().out
    assert "draw only from `generator`" in out and "✗ T = 0.5" not in out          # the law itself is right
    checks.check_sample_with_temperature(global_rng, show_solution=True)
    assert "torch.multinomial(probs.cpu(), 1, generator=generator)" in capsys.readouterr().out


def test_lstm_cell_check_names_the_old_c_and_a_forgotten_bias(capsys):
    for wrong, named in ((h_from_old_c, "h_new computed from the old c"), (no_bias_hh, "bias_hh forgotten")):
        assert not _verdict(checks.check_lstm_cell, wrong, capsys)
        checks.check_lstm_cell(wrong)
        out = capsys.readouterr().out
        assert "✗ N = 3, D = 4, H = 5" in out and named in out, out
        assert "hint:" in out and "solution:" not in out
        checks.check_lstm_cell(wrong, show_solution=True)
        assert "solution: z = x @ weight_ih.T" in capsys.readouterr().out


def test_clip_grad_norm_names_scaling_up_below_max_norm(capsys):
    checks.check_clip_grad_norm(always_rescale)
    out = capsys.readouterr().out
    assert "✗ total norm below max_norm" in out
    assert "gradients whose norm is below max_norm must stay unchanged" in out, out
    checks.check_clip_grad_norm(clip_flat)
    assert "must stay unchanged" not in capsys.readouterr().out
