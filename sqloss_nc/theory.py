"""Predictions of the paper's theory, rewritten for this project's loss normalization.

The paper (section 6) writes the objective as ½ Σ_n Σ_i (y_n^i − f^i(x_n))² + λ_p/2 Σ_k ||W_k||², with
N samples *per class*. This project minimizes (SPEC §4)

    L_tot = 1/(N_tot·C) Σ_n Σ_i (f^i(x_n) − y_n^i)²  +  λ/2 Σ_k ||W_k||²,   N_tot = C·N.

The stationarity condition for a classifier row w_c (h_n = features of x_n, f^c_n = <w_c, h_n>):

    ∂L_tot/∂w_c = 2/(N_tot·C) Σ_n (f^c_n − y^c_n) h_n + λ w_c = 0
    ⇔  Σ_n (y^c_n − f^c_n) h_n = λ' w_c,     λ' = λ·N_tot·C/2,

which is the paper's Eq. 32 = 0 with λ_p replaced by λ'. Dotting with w_c (Eq. 34's first line):
λ'||w_c||² = Σ_n (y^c_n − f^c_n) f^c_n. Under symmetric quasi-interpolation (Assumption 1:
f^c = 1 − ε on class c, f^{c'} = ε/(C−1) on the others), the N samples of class c give
ε(1 − ε) each and the (C−1)N others give −ε²/(C−1)² each, so

    λ'||w_c||² = N (ε − C ε²/(C−1))
    ⇒ ||w_c||² = N/λ' · (ε − C ε²/(C−1)) = 2/(λ·C²) · (ε − C ε²/(C−1))      (Eq. 34, our units)

using N/λ' = (N_tot/C)/(λ N_tot C/2) = 2/(λ C²). With unbalanced classes the mean over c of
||w_c||² gives the same expression (Σ_c N_c/N_tot = 1). Eq. 35, <w_c, μ_G> = 1/C, is unchanged
by the rescaling of λ.
"""

from __future__ import annotations

import math


def effective_weight_decay(weight_decay: float, n_train: int, num_classes: int) -> float:
    """λ' = λ·N_tot·C/2: the paper's λ (sum-of-squares loss) equivalent to our λ (mean loss)."""
    return weight_decay * n_train * num_classes / 2.0


def predicted_w_norm_sq(eps: float, weight_decay: float, num_classes: int) -> float:
    """Eq. 34 in this project's normalization: mean_c ||w_c||² = 2/(λC²)·(ε − Cε²/(C−1)).

    Args:
        eps: the interpolation gap ε = 1 − mean_n f_{y_n}(x_n) (`eps_gap`).
        weight_decay: λ of the coupled weight decay (NaN is returned for λ = 0: no prediction).
        num_classes: C.
    """
    if weight_decay <= 0 or not math.isfinite(eps):
        return float("nan")
    c = num_classes
    return 2.0 / (weight_decay * c * c) * (eps - c * eps * eps / (c - 1))
