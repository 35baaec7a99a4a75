"""SimAM: parameter-free attention from a per-neuron energy (Yang et al., ICML 2021).

The paper scores neuron ``t`` by the minimal energy of a linear separator between ``t`` and
the other neurons of its channel; the closed form of that minimum is

    1 / e_t* = (t - mu)^2 / (4 * (var + lambda)) + 1/2

Following the official code, ``mu`` and ``var`` are computed once per channel over all
``M = H*W`` neurons, with ``var = sum((x - mu)^2) / (M - 1)``, instead of over the ``M - 1``
other neurons for every ``t``. That is the paper's energy with the channel's distribution
estimated from the whole channel; the leave-one-out version differs by ``O(1/M)``
(``tests/test_simam.py`` checks both conventions against a numerical minimisation).
"""

from __future__ import annotations

import torch
from torch import nn

from attnviz.recorder import bypassed, record


def simam_energy(x: torch.Tensor, e_lambda: float = 1e-4) -> torch.Tensor:
    """Inverse minimal energy ``E_inv`` (B,C,H,W), as the official SimAM code computes it.

    A pure function so that probes can observe the energy at any layer of a foreign model
    without inserting a module. For a 1x1 map (``M - 1 = 0``) the variance is taken as 0,
    so every neuron gets the neutral value 0.5 instead of NaN.
    """
    n = max(x.shape[-2] * x.shape[-1] - 1, 1)
    d2 = (x - x.mean(dim=(-2, -1), keepdim=True)).pow(2)
    var = d2.sum(dim=(-2, -1), keepdim=True) / n
    return d2 / (4 * (var + e_lambda)) + 0.5


class SimAM(nn.Module):
    """Gate every neuron by ``sigmoid(E_inv)``; records ``"energy"`` (B,C,H,W)."""

    def __init__(self, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bypassed(self):
            return x
        energy = simam_energy(x, self.e_lambda)
        record(self, "simam", "energy", energy)
        return x * torch.sigmoid(energy)
