"""SimAM's energy against a numerical minimisation of the paper's energy function.

The paper (Yang et al. 2021, eq. 2 with the regulariser) defines, for a target neuron ``t``
and the other neurons ``x_i`` of its channel,

    e_t(w, b) = 1/(M-1) sum_i (-1 - (w x_i + b))^2 + (1 - (w t + b))^2 + lambda w^2.

Writing ``u = 1 + w mu + b`` and ``v = 1 - w t - b`` (``mu``, ``var`` = mean and population
variance of the ``x_i``), the sum is ``u^2 + w^2 var``; ``u + v = 2 - w (t - mu)`` is fixed by
``w``, so the best ``b`` makes ``u = v`` and ``e = (2 - w d)^2 / 2 + w^2 (var + lambda)``
with ``d = t - mu``. Minimising over ``w`` gives exactly

    e_t* = 4 (var + lambda) / (d^2 + 2 var + 2 lambda),
    1 / e_t* = d^2 / (4 (var + lambda)) + 1/2.

Two conventions for ``mu`` and ``var``:

* leave-one-out (the paper's definition): the M-1 other neurons, population variance;
* the official code (DESIGN.md, ``simam_energy``): ``mu`` over all M neurons and
  ``var = sum((x - mu)^2) / (M - 1)``. This is the same minimum for an "other neurons" sample
  with mean ``mu`` and population variance ``S/(M-1)``, i.e. the whole channel with its spread
  Bessel-corrected: ``mu + sqrt(M/(M-1)) (x - mu)``.

Exactly: ``t - mu_loo = M/(M-1) d`` and ``var_loo = S/(M-1) - M d^2/(M-1)^2``, so the two
differ by O(1/M). The tests minimise numerically (L-BFGS and a least-squares solve, float64)
and check which convention the implementation matches.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnviz.attention import SimAM, simam_energy
from attnviz.recorder import Recorder, recording

LAM = 1e-4


def energy(w: torch.Tensor, b: torch.Tensor, t: float, others: torch.Tensor, lam: float):
    return ((-1 - (w * others + b)) ** 2).mean() + (1 - (w * t + b)) ** 2 + lam * w**2


def min_energy_lbfgs(t: float, others: torch.Tensor, lam: float) -> float:
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [params],
        lr=1,
        max_iter=500,
        tolerance_grad=1e-15,
        tolerance_change=1e-18,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        e = energy(params[0], params[1], t, others, lam)
        e.backward()
        return e

    opt.step(closure)
    with torch.no_grad():
        return float(energy(params[0], params[1], t, others, lam))


def min_energy_lstsq(t: float, others: torch.Tensor, lam: float) -> float:
    """The energy is a weighted ridge regression in (w, b): solve it as least squares."""
    n = others.numel()
    s = 1 / math.sqrt(n)
    rows = [torch.stack([others * s, torch.full_like(others, s)], dim=1)]
    rows.append(torch.tensor([[t, 1.0], [math.sqrt(lam), 0.0]], dtype=torch.float64))
    a = torch.cat(rows)
    y = torch.cat([torch.full((n,), -s, dtype=torch.float64), torch.tensor([1.0, 0.0]).double()])
    sol = torch.linalg.lstsq(a, y[:, None]).solution[:, 0]
    return float(energy(sol[0], sol[1], t, others, lam))


def closed_form(t: float, others: torch.Tensor, lam: float) -> float:
    mu = others.mean()
    var = ((others - mu) ** 2).mean()
    return float(4 * (var + lam) / ((t - mu) ** 2 + 2 * var + 2 * lam))


@pytest.mark.parametrize("lam", [LAM, 0.1])
@pytest.mark.parametrize("index", [0, 7, 12])
def test_closed_form_is_numerical_minimum_leave_one_out(lam: float, index: int) -> None:
    torch.manual_seed(index)
    channel = torch.randn(16, dtype=torch.float64) * 2 + 0.3
    t = float(channel[index])
    others = torch.cat([channel[:index], channel[index + 1 :]])
    expected = closed_form(t, others, lam)
    assert min_energy_lbfgs(t, others, lam) == pytest.approx(expected, rel=1e-7)
    assert min_energy_lstsq(t, others, lam) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("lam", [LAM, 0.1])
def test_implementation_matches_whole_channel_convention(lam: float) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64) * 1.5
    got = simam_energy(x, lam)
    m = 12
    for c in range(2):
        channel = x[0, c].flatten()
        mu = channel.mean()
        surrogate = mu + math.sqrt(m / (m - 1)) * (channel - mu)
        for pos in (0, 5, 11):
            t = float(channel[pos])
            e_min = min_energy_lbfgs(t, surrogate, lam)
            assert min_energy_lstsq(t, surrogate, lam) == pytest.approx(e_min, rel=1e-7)
            assert float(got[0, c].flatten()[pos]) == pytest.approx(1 / e_min, rel=1e-6)


def test_leave_one_out_relation_and_difference() -> None:
    """The exact link between the conventions, and proof that they are not the same number."""
    torch.manual_seed(2)
    channel = torch.randn(9, dtype=torch.float64)
    m = channel.numel()
    mu, s = channel.mean(), ((channel - channel.mean()) ** 2).sum()
    implemented = simam_energy(channel.view(1, 1, 3, 3), LAM).flatten()
    for pos in range(m):
        t = float(channel[pos])
        d = t - mu
        d_loo = m / (m - 1) * d
        var_loo = s / (m - 1) - m * d**2 / (m - 1) ** 2
        inv_loo = float(d_loo**2 / (4 * (var_loo + LAM)) + 0.5)
        others = torch.cat([channel[:pos], channel[pos + 1 :]])
        assert 1 / min_energy_lstsq(t, others, LAM) == pytest.approx(inv_loo, rel=1e-9)
    far = int((channel - mu).abs().argmax())
    others = torch.cat([channel[:far], channel[far + 1 :]])
    loo = 1 / min_energy_lstsq(float(channel[far]), others, LAM)
    assert abs(float(implemented[far]) - loo) > 0.05 * loo


@settings(max_examples=25, deadline=None)
@given(
    lam=st.floats(1e-6, 1.0),
    seed=st.integers(0, 2**16),
    h=st.integers(1, 6),
    w=st.integers(2, 6),
)
def test_energy_matches_independent_formula(lam: float, seed: int, h: int, w: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    var = x.var(dim=(2, 3), keepdim=True, correction=1)
    expected = (x - x.mean(dim=(2, 3), keepdim=True)) ** 2 / (4 * (var + lam)) + 0.5
    torch.testing.assert_close(simam_energy(x, lam), expected)


def test_module_output_and_record() -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 4, 5, 6)
    model = nn.Sequential(SimAM(e_lambda=0.1))
    with recording(Recorder(model)) as rec:
        out = model(x)
    var = x.var(dim=(2, 3), keepdim=True, correction=1)
    e_inv = (x - x.mean(dim=(2, 3), keepdim=True)) ** 2 / (4 * (var + 0.1)) + 0.5
    torch.testing.assert_close(out, x * torch.sigmoid(e_inv))
    [r] = rec.records
    assert (r.layer, r.module, r.kind) == ("0", "simam", "energy")
    assert r.tensor.shape == (2, 4, 5, 6)
    assert bool((r.tensor >= 0.5).all())
    assert not r.tensor.requires_grad


def test_single_pixel_map_is_neutral_not_nan() -> None:
    e = simam_energy(torch.randn(1, 3, 1, 1))
    torch.testing.assert_close(e, torch.full((1, 3, 1, 1), 0.5))


def test_no_parameters() -> None:
    assert list(SimAM().state_dict()) == []
