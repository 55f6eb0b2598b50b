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

The rescaled square loss (Hui & Belkin, `loss.kind: square_rescaled`, SPEC §9),
L = 1/(N_tot·C) Σ_n [k(f^{y_n}_n − M)² + Σ_{c≠y_n} (f^c_n)²], has per-sample weights ω_nc = k on the
true class (1 elsewhere) and targets t_nc = M·δ_{c y_n}. The same dot product gives
λ||w_c||² = 2/(N_tot·C) Σ_n ω_nc (t_nc − f^c_n) f^c_n. Assumption 1 scaled to the target M
(f^c = M(1 − ε) on class c, f^{c'} = Mε/(C−1) on the others, so the outputs sum to M as the
targets do, and ε = 1 − mean_n f_{y_n}/M is the *relative* gap, `eps_gap`) gives kM²ε(1 − ε)
per sample of class c and −M²ε²/(C−1)² per other sample:

    mean_c ||w_c||² = 2M²/(λC²) · (kε − (k(C−1) + 1)ε²/(C−1))                 (Eq. 34, rescaled)

which is the plain formula at k = M = 1 (k(C−1) + 1 = C). Eq. 35 becomes <w_c, μ_G> = M/C (the
mean over c' of f^c(μ_{c'}) under Assumption 1, bias-free). What assumes M = k = 1: every
toy-model check of `theory_checks` (ρ_eq of Eq. 11, the loss identity, Lemma 2's gaps, the ρ flow)
is derived for targets 1 and is computed for `loss.kind: square` only; a `square_rescaled` run
gets the Eq. 34 and Eq. 35 rows alone.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd


def effective_weight_decay(weight_decay: float, n_train: int, num_classes: int) -> float:
    """λ' = λ·N_tot·C/2: the paper's λ (sum-of-squares loss) equivalent to our λ (mean loss)."""
    return weight_decay * n_train * num_classes / 2.0


def predicted_w_norm_sq(eps: float, weight_decay: float, num_classes: int, k: float = 1.0, M: float = 1.0) -> float:
    """Eq. 34 in this project's normalization: mean_c ||w_c||² = 2/(λC²)·(ε − Cε²/(C−1)); for
    the rescaled square loss 2M²/(λC²)·(kε − (k(C−1)+1)ε²/(C−1)) (module docstring).

    Args:
        eps: the relative interpolation gap ε = 1 − mean_n f_{y_n}(x_n)/M (`eps_gap`).
        weight_decay: λ of the coupled weight decay (NaN is returned for λ = 0: no prediction).
        num_classes: C.
        k, M: the rescaled loss' true-class weight and target (1, 1: the plain square loss,
            whose value is unchanged bit for bit).

    Example:
        >>> predicted_w_norm_sq(0.1, 0.01, 2) == predicted_w_norm_sq(0.1, 0.01, 2, k=1.0, M=1.0)
        True
    """
    if weight_decay <= 0 or not math.isfinite(eps):
        return float("nan")
    c = num_classes
    return M * M * 2.0 / (weight_decay * c * c) * (k * eps - (k * (c - 1) + 1) * eps * eps / (c - 1))


# =============================================================================================
# 1. The ρ flow of the toy model (section 3.4: Eqs. 6, 8, 11; Lemma 9 / Eqs. 14, 41) in this
#    project's units, driven by the recorded margins.
# =============================================================================================

OUTPUTS = ("onehot", "scalar")
_RK4_MAX_STEPS = 2048  # per recorded interval; stiffer intervals switch to exponential steps


def margin_rate(output: str = "onehot", num_classes: int = 2) -> float:
    """k in dρ/dt = k·(μ − ρ(M + λ′)), the rate at which the margins drive ρ (see `rho_flow_rhs`).

    Args:
        output: `onehot` (C outputs, SPEC's mean-over-N·C square loss) or `scalar` (one output,
            y = ±1, mean-over-N square loss).
        num_classes: C (must be 2 for `scalar`).

    Returns:
        2 for the scalar head (the factor of the paper's Eq. 8), 2(C−1)/C² for the one-hot head
        (1/2 for C = 2).

    Example:
        >>> margin_rate("onehot", 2), margin_rate("scalar")
        (0.5, 2.0)
    """
    _check_head(output, num_classes)
    if output == "scalar":
        return 2.0
    c = num_classes
    return 2.0 * (c - 1) / (c * c)


def toy_weight_decay(weight_decay: float, output: str = "onehot", num_classes: int = 2) -> float:
    """λ′ = λ/k, the toy model's λ (Eq. 1: mean loss + λ_p·ρ²) equivalent to our coupled λ.

    It is the λ of Eq. 11, ρ_eq = μ/(M + λ′): λ′ = λ/2 for the scalar head, λ′ = λC²/(2(C−1))
    for the one-hot head (2λ for C = 2). Not the same as `effective_weight_decay`, which converts
    to the *sum*-of-squares loss of section 6. Derivation in `rho_flow_rhs`.

    Args:
        weight_decay: λ of the coupled weight decay (SPEC §4).
        output: `onehot` or `scalar`.
        num_classes: C.

    Example:
        >>> toy_weight_decay(0.01, "onehot", 2), toy_weight_decay(0.01, "scalar")
        (0.02, 0.005)
    """
    return float(weight_decay) / margin_rate(output, num_classes)


def rho_flow_rhs(rho, mu, M, weight_decay: float, output: str = "onehot", num_classes: int = 2, kappa=1.0, common=0.0):
    """dρ/dt of the gradient flow in this project's units, driven by the margin moments μ, M.

    Derivation. Let ρ = ||W_L||_F (the classifier norm `rho_last`; it is the recorded `rho` for
    BatchNorm and Lagrange nets) and f_n = W_L h_n. Since f is linear in W_L,
    <W_L, ∂L/∂W_L> = Σ_n <∂L/∂f_n, f_n>, and the flow Ẇ_L = −∂L/∂W_L − λW_L of the coupled
    weight decay (SPEC §4) gives, exactly,

        ρ ρ̇ = <W_L, Ẇ_L> = −Σ_n <∂L/∂f_n, f_n> − λρ².                                    (*)

    The hidden layers (normalized, decayed or not) enter only through f_n.

    * Scalar head, y = ±1, L = 1/N Σ (f_n − y_n)² = mean (1 − m_n)², m_n = y_n f_n = ρ m̄_n:
      −Σ <∂L/∂f, f> = 2·mean (m − m²) = 2(ρμ − ρ²M), so

          dρ/dt = 2(μ − ρM) − λρ = 2·(μ − ρ(M + λ/2)):   k = 2, λ′ = λ/2,

      the paper's Eq. 8 with λ_p = λ/2; and L = 1 − 2ρμ + ρ²M exactly (Lemma 9's first line).
    * One-hot head, C = 2, L = 1/(2N) Σ_n [(f_{n,y} − 1)² + f_{n,o}²] (o = the other class).
      Write m = f_y − f_o (the SPEC margin) and a = f_y + f_o (the common mode, target 1). Then
      (f_y − 1)² + f_o² = ½[(1 − m)² + (1 − a)²], so exactly

          L = ¼(1 − 2ρμ + ρ²M) + ¼·mean_n (1 − a_n)²,

      and f_y − ||f||² = ½[(m − m²) + (a − a²)] turns (*) into

          dρ/dt = ½(μ − ρM) + mean_n a_n(1 − a_n)/(2ρ) − λρ.

      `metrics.csv` records μ and M but not a, so the toy model keeps the margin part and drops
      the common-mode drive (`common` = mean a(1 − a)). That drive vanishes once the common
      mode is fitted (a_n = 1, i.e. f_0 + f_1 = 1, as under Assumption 1) but not early in
      training: at small initialization a ≈ 0 and it drives ρ at least as hard as the margins
      (post-ReLU features have a large mean, so fitting f_0 + f_1 = 1 is fast). Dropped:

          dρ/dt = ½·(μ − ρ(M + 2λ)):   k = ½, λ′ = 2λ,   ρ_eq = μ/(M + 2λ),

      i.e. Eq. 8 with time scaled by ¼ and λ_p = 2λ.
    * One-hot head, C > 2: assuming all wrong-class outputs equal (the pattern of Assumption 1)
      the margin part of f_y − ||f||² is (C−1)/C·m(1 − m), so k = 2(C−1)/C², λ′ = λC²/(2(C−1)).
      An approximation: the margin uses the largest wrong-class output.

    For nets whose `rho` is not ||W_L|| (`normalization: none`, ρ = Π_k ||W_k||), κ = ρ/ρ_L
    gives raw margins m = ρ_L κ m̄ and the flow of the classifier norm,
    dρ_L/dt = k(κμ − ρ_L κ²M) − λρ_L (exact given the recorded κ(t)).

    Time is gradient-flow time, t = η/(1 − momentum) per SGD step (`flow_time`).

    Args:
        rho: ρ_L (scalar or array).
        mu: μ = mean of m̄ = m/ρ (`margin_mean`).
        M: M = mean of m̄² (`margin_sq_mean`).
        weight_decay: λ (coupled).
        output: `onehot` or `scalar`.
        num_classes: C.
        kappa: ρ/ρ_L (1 for BatchNorm and Lagrange nets).
        common: one-hot C = 2 common-mode drive mean a(1 − a) (0: dropped, the toy model).

    Example:
        >>> round(rho_flow_rhs(1.0, 0.5, 0.3, 0.01, "scalar"), 12)   # 2(0.5 − 0.3) − 0.01
        0.39
    """
    k = margin_rate(output, num_classes)
    return k * (kappa * mu - rho * kappa * kappa * M) + common / (2.0 * rho) - weight_decay * rho


def rho_equilibrium(mu, M, lam_prime):
    """Eq. 11, ρ_eq = μ/(M + λ′), with λ′ from `toy_weight_decay` (NaN where M + λ′ ≤ 0).

    Args:
        mu: μ (`margin_mean`), scalar or array.
        M: M (`margin_sq_mean`).
        lam_prime: λ′ in the toy model's normalization (λ′ = 0 gives the paper's ρ_0).

    Example:
        >>> round(rho_equilibrium(0.2, 0.05, toy_weight_decay(0.01)), 6)   # 0.2 / (0.05 + 0.02)
        2.857143
    """
    mu_a, den = np.asarray(mu, dtype=float), np.asarray(M, dtype=float) + lam_prime
    out = np.where(den > 0, mu_a / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def flow_time(lr, steps, momentum: float = 0.0):
    """Gradient-flow time of `steps` SGD steps at rate `lr`: t = lr·steps/(1 − momentum).

    Heavy-ball momentum (PyTorch's v ← μ_m v + g, W ← W − ηv) moves, once its velocity has built
    up over ~1/(1 − μ_m) steps, like gradient descent at rate η/(1 − μ_m); the transient and
    every O(η) correction are ignored.

    Args:
        lr: η, a scalar or an array (e.g. one value per epoch).
        steps: number of SGD steps (scalar or array), e.g. epochs × ceil(N / batch_size).
        momentum: μ_m in [0, 1).

    Example:
        >>> flow_time(0.01, 5, 0.9)   # one epoch of 600 samples in batches of 128
        0.5
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    out = np.asarray(lr, dtype=float) * np.asarray(steps, dtype=float) / (1.0 - momentum)
    return round(float(out), 15) if out.ndim == 0 else out


def integrate_rho_flow(
    epochs: Sequence[float],
    mu: Sequence[float],
    M: Sequence[float],
    rho0: float,
    lr,
    weight_decay: float,
    steps_per_epoch: int,
    momentum: float = 0.0,
    *,
    output: str = "onehot",
    num_classes: int = 2,
    kappa: Optional[Sequence[float]] = None,
    common: Optional[Sequence[float]] = None,
    substeps: int = 32,
) -> pd.DataFrame:
    """Integrate the ρ flow (`rho_flow_rhs`) from ρ(epochs[0]) = rho0, driven by recorded μ, M.

    μ, M (and κ, `common`) are interpolated linearly in flow time between recorded epochs. The
    interval from row i to row i+1 lasts lr_{i+1}·steps_per_epoch·(e_{i+1} − e_i)/(1 − momentum),
    lr_{i+1} being the rate used during those epochs (`metrics.csv`'s `lr` of the later row).
    Classic RK4 with at least `substeps` steps per interval and more where the flow is stiff
    (k κ²M Δt large). It stops at the first non-finite input or state (the rest is NaN).

    Args:
        epochs: recorded epochs, strictly increasing (need not be consecutive).
        mu: μ at those epochs (`margin_mean`).
        M: M at those epochs (`margin_sq_mean`).
        rho0: ρ_L at epochs[0] (the recorded `rho_last`).
        lr: learning rate, a scalar or one value per row.
        weight_decay: λ (coupled).
        steps_per_epoch: ceil(N / batch_size).
        momentum: μ_m of the SGD.
        output: `onehot` or `scalar`.
        num_classes: C.
        kappa: ρ/ρ_L per row (None: 1, BatchNorm/Lagrange nets).
        common: one-hot C = 2 common-mode drive mean a(1 − a) per row (None: dropped).
        substeps: minimum RK4 steps per recorded interval.

    Returns:
        DataFrame with columns `epoch`, `t` (flow time from epochs[0]), `rho` (predicted ρ_L).

    Example:
        >>> df = integrate_rho_flow([0, 1, 2], [0.2] * 3, [0.05] * 3, 0.1, 0.01, 0.01, 5, 0.9)
        >>> list(df.columns), round(float(df["t"].iloc[-1]), 12)
        (['epoch', 't', 'rho'], 1.0)
    """
    ep = np.asarray(epochs, dtype=float)
    n = len(ep)
    if n == 0:
        return pd.DataFrame({"epoch": [], "t": [], "rho": []})
    if np.any(np.diff(ep) <= 0):
        raise ValueError("epochs must be strictly increasing")
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    mu_a, m_a = np.asarray(mu, dtype=float), np.asarray(M, dtype=float)
    lr_a = np.broadcast_to(np.asarray(lr, dtype=float), (n,))
    kap = np.ones(n) if kappa is None else np.asarray(kappa, dtype=float)
    com = np.zeros(n) if common is None else np.asarray(common, dtype=float)
    for name, arr in (("mu", mu_a), ("M", m_a), ("kappa", kap), ("common", com)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has {arr.size} values for {n} epochs")
    k = margin_rate(output, num_classes)
    t = np.zeros(n)
    t[1:] = np.cumsum(flow_time(lr_a[1:], steps_per_epoch * np.diff(ep), momentum))
    rho = np.full(n, np.nan)
    rho[0] = r = float(rho0)
    for i in range(n - 1):
        ends = (mu_a[i], mu_a[i + 1], m_a[i], m_a[i + 1], kap[i], kap[i + 1], com[i], com[i + 1], lr_a[i + 1])
        if not (all(math.isfinite(v) for v in ends) and math.isfinite(r)):
            break
        mu0, mu1, M0, M1, k0, k1, c0, c1, _ = (float(v) for v in ends)
        dt = t[i + 1] - t[i]
        stiffness = k * max(k0 * k0 * M0, k1 * k1 * M1, 0.0) + abs(weight_decay)
        steps = max(substeps, math.ceil(stiffness * dt / 0.25))  # h·stiffness ≤ 1/4: RK4 accurate, not just stable
        h, ds = dt / steps, 1.0 / steps

        coeffs = _interval_coefficients(k, weight_decay, mu0, mu1, M0, M1, k0, k1, c0, c1)

        def f(s: float, x: float, coeffs=coeffs) -> float:
            a, b, cm = coeffs(s)
            return a - b * x + (cm / (2.0 * x) if cm else 0.0)

        if steps <= _RK4_MAX_STEPS:
            for j in range(steps):
                s = j * ds
                a1 = f(s, r)
                a2 = f(s + ds / 2, r + h / 2 * a1)
                a3 = f(s + ds / 2, r + h / 2 * a2)
                a4 = f(s + ds, r + h * a3)
                r += h / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
        else:
            # Very stiff (ρ relaxes to A/B much faster than μ, M change): exponential midpoint
            # steps, exact for frozen coefficients and stable at any step size.
            steps = _RK4_MAX_STEPS
            h, ds = dt / steps, 1.0 / steps
            for j in range(steps):
                a, b, cm = coeffs((j + 0.5) * ds)
                a += cm / (2.0 * r) if cm else 0.0
                decay = math.exp(-b * h)
                r = a / b + (r - a / b) * decay if b > 0 else r + a * h
        if not math.isfinite(r):
            break
        rho[i + 1] = r
    return pd.DataFrame({"epoch": ep, "t": t, "rho": rho})


def _interval_coefficients(k, lam, mu0, mu1, M0, M1, k0, k1, c0, c1) -> Callable[[float], tuple[float, float, float]]:
    """(A, B, cm) of ρ̇ = A − Bρ + cm/(2ρ) at s ∈ [0, 1] inside one recorded interval, with μ, M, κ
    and the common-mode drive linear in s."""

    def coeffs(s: float) -> tuple[float, float, float]:
        kk = k0 + (k1 - k0) * s
        return k * kk * (mu0 + (mu1 - mu0) * s), k * kk * kk * (M0 + (M1 - M0) * s) + lam, c0 + (c1 - c0) * s

    return coeffs


def _check_head(output: str, num_classes: int) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if num_classes < 2 or (output == "scalar" and num_classes != 2):
        raise ValueError(f"num_classes must be >= 2 (exactly 2 for a scalar head), got {num_classes}")


def _cfg(config: Optional[Mapping[str, Any]], dotted: str, default: Any = None) -> Any:
    """A value of a nested config dict (as in `config.yaml`) or of a flat dotted-key dict."""
    if not config:
        return default
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _head(config: Optional[Mapping[str, Any]]) -> tuple[str, int]:
    classes = _cfg(config, "data.classes", [0, 1])
    c = len(classes) if isinstance(classes, (list, tuple)) else int(classes)
    return str(_cfg(config, "model.output", "onehot")), c


def _n_train(config: Optional[Mapping[str, Any]], n_train: Optional[int]) -> Optional[int]:
    if n_train is not None:
        return int(n_train)
    for key in ("data.n_train", "n_train"):
        v = _cfg(config, key)
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return int(v)
    per_class = _cfg(config, "data.train_per_class")
    if isinstance(per_class, numbers.Integral) and not isinstance(per_class, bool):
        # A source with fewer images per class gives fewer; status.json's n_train is exact.
        return int(per_class) * _head(config)[1]
    return None


def load_run(run_dir: Union[str, Path]) -> tuple[pd.DataFrame, dict, Optional[int], Optional[pd.DataFrame]]:
    """Read a run directory: `(metrics, config, n_train, nc)`.

    Args:
        run_dir: `OUT/<experiment>/<run_id>/` with at least `metrics.csv`; `config.yaml`,
            `status.json` (for `data.n_train`) and `nc.csv` are read when present ({}, None, None
            otherwise).

    Raises:
        FileNotFoundError: the directory or its `metrics.csv` does not exist.
        ValueError: a file that cannot be parsed.

    Example:
        >>> metrics, config, n_train, nc = load_run("outputs/quickstart/seed=0")  # doctest: +SKIP
    """
    import yaml

    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"run directory {d} does not exist")
    if not (d / "metrics.csv").is_file():
        raise FileNotFoundError(f"{d / 'metrics.csv'} does not exist")
    try:
        metrics = pd.read_csv(d / "metrics.csv")
        config = yaml.safe_load((d / "config.yaml").read_text()) if (d / "config.yaml").is_file() else {}
        nc = pd.read_csv(d / "nc.csv") if (d / "nc.csv").is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot parse a file in {d}: {err}") from None
    n_train = None
    if (d / "status.json").is_file():
        try:
            v = json.loads((d / "status.json").read_text()).get("data", {}).get("n_train")
            n_train = int(v) if v is not None else None
        except (ValueError, TypeError, AttributeError):
            n_train = None
    return metrics, (config if isinstance(config, dict) else {}), n_train, nc


def compare_rho_flow(
    metrics: Union[pd.DataFrame, str, Path],
    config: Optional[Mapping[str, Any]] = None,
    *,
    n_train: Optional[int] = None,
    start_epoch: Optional[float] = None,
) -> pd.DataFrame:
    """Integrate the toy-model ρ flow from a run's recorded ρ, μ(t), M(t) and compare with ρ(t).

    The flow (`rho_flow_rhs`, common mode dropped) is driven by the recorded margins only, so the
    difference measures what the toy model leaves out: the one-hot head's common-mode drive (the
    fast early growth of ρ), SGD noise and momentum transients, and for BatchNorm nets the gap
    between the margins measured in inference mode (moving statistics, which lag early on) and
    the batch statistics the training steps use.

    Args:
        metrics: a `metrics.csv` DataFrame, the path of one, or a run directory (then `config`
            and `n_train` default to its `config.yaml` and `status.json`).
        config: the resolved run config (nested as `config.yaml`, or flat dotted keys). Uses
            `optim.{lr,momentum,weight_decay,batch_size}`, `model.output`, `data.classes`,
            `loss.kind`, and `data.n_train` / `data.train_per_class` when `n_train` is None.
        n_train: number of training samples N (steps per epoch = ceil(N / batch_size)).
        start_epoch: start from the recorded ρ at the first epoch ≥ this (default: the first
            row, normally epoch 0); e.g. half the run checks the late, near-equilibrium phase.

    Returns:
        DataFrame with columns `epoch, t, rho_recorded, rho_predicted, rel_error, rho_eq`: ρ is
        the classifier norm `rho_last` (= `rho` for BatchNorm/Lagrange nets), `t` the flow time,
        `rel_error` = |predicted − recorded|/recorded, `rho_eq` Eq. 11 from that row's μ, M.
        `attrs`: `max_rel_error`, `final_rel_error`, `lambda_prime`, `rate_k`,
        `steps_per_epoch`, `start_epoch`.

    Raises:
        ValueError: missing columns, unknown N, a non-square loss, or no rows.
        FileNotFoundError: a path that does not exist.

    Example:
        >>> df = compare_rho_flow("outputs/quickstart/seed=0")  # doctest: +SKIP
        >>> df.attrs["max_rel_error"]  # doctest: +SKIP
    """
    if not isinstance(metrics, pd.DataFrame):
        p = Path(metrics)
        run_dir = p if p.is_dir() else p.parent
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        m_run, cfg_run, n_run, _ = load_run(run_dir) if (run_dir / "metrics.csv").is_file() else (None, {}, None, None)
        metrics = m_run if p.is_dir() else pd.read_csv(p)
        config = cfg_run if config is None else config
        n_train = n_run if n_train is None else n_train
    missing = [c for c in ("epoch", "rho", "margin_mean", "margin_sq_mean") if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics lack column(s) {', '.join(missing)}")
    kind = _cfg(config, "loss.kind", "square")
    if kind != "square":
        raise ValueError(f"the ρ flow is derived for the square loss; this run used loss.kind={kind!r}")
    output, c = _head(config)
    n = _n_train(config, n_train)
    if n is None or n <= 0:
        raise ValueError("number of training samples unknown: pass n_train, or a config with data.n_train")
    # Full-batch gradient descent (optim.full_batch) takes one step per epoch.
    spe = 1 if _cfg(config, "optim.full_batch", False) else -(-n // int(_cfg(config, "optim.batch_size", 128)))
    momentum = float(_cfg(config, "optim.momentum", 0.0))
    lam = float(_cfg(config, "optim.weight_decay", 0.0))
    m = metrics.sort_values("epoch").reset_index(drop=True)
    if start_epoch is not None:
        m = m[m["epoch"] >= start_epoch].reset_index(drop=True)
    if m.empty:
        raise ValueError("no metrics rows to integrate from")
    lr = m["lr"].to_numpy(float) if "lr" in m.columns else float(_cfg(config, "optim.lr", 0.01))
    rho = m["rho"].to_numpy(float)
    rho_l = m["rho_last"].to_numpy(float) if "rho_last" in m.columns else rho
    kappa = rho / rho_l
    mu, M = m["margin_mean"].to_numpy(float), m["margin_sq_mean"].to_numpy(float)
    sim = integrate_rho_flow(m["epoch"].to_numpy(float), mu, M, rho_l[0], lr, lam, spe, momentum, output=output, num_classes=c, kappa=kappa)
    lam_p = toy_weight_decay(lam, output, c)
    pred = sim["rho"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(pred - rho_l) / np.abs(rho_l)
        rho_eq = kappa * mu / (kappa**2 * M + lam_p)
    out = pd.DataFrame(
        {
            "epoch": m["epoch"].to_numpy(),
            "t": sim["t"].to_numpy(),
            "rho_recorded": rho_l,
            "rho_predicted": pred,
            "rel_error": rel,
            "rho_eq": rho_eq,
        }
    )
    finite = rel[np.isfinite(rel)]
    out.attrs.update(
        max_rel_error=float(finite.max()) if finite.size else float("nan"),
        final_rel_error=float(rel[-1]),
        lambda_prime=lam_p,
        rate_k=margin_rate(output, c),
        steps_per_epoch=spe,
        start_epoch=float(m["epoch"].iloc[0]),
    )
    return out


# =============================================================================================
# 2. The logistic equation of Eq. 51 (Figure 10): unnormalized net, equal layer norms, λ = 0.
# =============================================================================================


def _rk4(f: Callable[[float, np.ndarray], np.ndarray], y0, t: np.ndarray, substeps: int) -> np.ndarray:
    """Fixed-step RK4 of y' = f(t, y) reported at the times `t` (substeps per interval)."""
    y = np.array(y0, dtype=float, ndmin=1)
    out = np.empty((len(t), y.size))
    out[0] = y
    for i in range(len(t) - 1):
        h = (t[i + 1] - t[i]) / substeps
        s = t[i]
        for _ in range(substeps):
            k1 = f(s, y)
            k2 = f(s + h / 2, y + h / 2 * k1)
            k3 = f(s + h / 2, y + h / 2 * k2)
            k4 = f(s + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            s += h
        out[i + 1] = y
    return out


def logistic_rhs(rho, sum_yf: float, sum_f2: float, depth: int = 2):
    """Eq. 51: dρ/dt = 2L ρ^((2L−2)/L) (Σ y_n f_n − ρ Σ f_n²), with constant sums (Figure 10).

    Args:
        rho: ρ = ρ_k^L (scalar or array, ≥ 0).
        sum_yf: Σ_n y_n f_n (f of the normalized net; the paper's sum, not a mean).
        sum_f2: Σ_n f_n².
        depth: L, the number of layers.

    Example:
        >>> round(float(logistic_rhs(1.0, 1.0, 0.01, depth=2)), 12)   # 4·1·(1 − 0.01)
        3.96
    """
    return 2.0 * depth * np.power(rho, (2.0 * depth - 2.0) / depth) * (sum_yf - rho * sum_f2)


def logistic_closed_form(t, sum_yf: float, sum_f2: float, rho0: float, depth: int = 2):
    """The closed-form solution of Eq. 51 with constant sums, for L = 2 (and L = 1).

    L = 2 is the logistic equation ρ̇ = rρ(1 − ρ/K), r = 4Σyf, K = ρ_0 = Σyf/Σf² (Eq. 52):
    ρ(t) = K / (1 + (K/ρ(0) − 1)·e^(−rt)). L = 1: ρ(t) = K + (ρ(0) − K)·e^(−2Σf²·t). For L ≥ 3
    the solution is only implicit (t as an integral of ρ), and NaN is returned.

    Args:
        t: times (array).
        sum_yf: Σ y_n f_n (> 0).
        sum_f2: Σ f_n² (> 0).
        rho0: ρ(0) > 0.
        depth: L.

    Example:
        >>> float(logistic_closed_form(0.0, 1.0, 0.01, 0.5))
        0.5
    """
    t = np.asarray(t, dtype=float)
    K = sum_yf / sum_f2
    if depth == 2:
        return K / (1.0 + (K / rho0 - 1.0) * np.exp(-4.0 * sum_yf * t))
    if depth == 1:
        return K + (rho0 - K) * np.exp(-2.0 * sum_f2 * t)
    return np.full(t.shape, np.nan)


def simulate_logistic(
    sum_yf: float = 1.0,
    sum_f2: float = 0.01,
    rho0: float = 0.01,
    depth: int = 2,
    t_end: float = 5.0,
    points: int = 501,
    substeps: int = 20,
) -> pd.DataFrame:
    """Integrate Eq. 51 (RK4) next to its closed form: the sigmoidal growth of ρ in Figure 10.

    Defaults follow section 3.5: normalized margins ~0.01 make ρ_0 = Σyf/Σf² = 100 (the ρ needed
    to interpolate), reached from a small initialization ρ(0) = 0.01.

    Args:
        sum_yf: Σ_n y_n f_n (> 0).
        sum_f2: Σ_n f_n² (> 0).
        rho0: ρ(0) (> 0).
        depth: L ≥ 1 (closed form for L ≤ 2).
        t_end: final time (> 0).
        points: number of output times (≥ 2).
        substeps: RK4 steps between output times.

    Returns:
        DataFrame `t, rho_numeric, rho_closed_form`; `attrs`: `rho_0` (= K), `max_rel_error`
        (numeric vs closed form, NaN for L ≥ 3), `depth`.

    Example:
        >>> df = simulate_logistic(t_end=2.0, points=11)
        >>> df.attrs["max_rel_error"] < 1e-6
        True
    """
    if not (sum_yf > 0 and sum_f2 > 0 and rho0 > 0 and t_end > 0 and depth >= 1 and points >= 2):
        raise ValueError("need sum_yf > 0, sum_f2 > 0, rho0 > 0, t_end > 0, depth >= 1, points >= 2")
    t = np.linspace(0.0, float(t_end), int(points))
    num = _rk4(lambda s, y: logistic_rhs(np.maximum(y, 0.0), sum_yf, sum_f2, int(depth)), [rho0], t, int(substeps))[:, 0]
    closed = logistic_closed_form(t, sum_yf, sum_f2, rho0, int(depth))
    rel = np.abs(num - closed) / np.abs(closed)
    df = pd.DataFrame({"t": t, "rho_numeric": num, "rho_closed_form": closed})
    df.attrs.update(rho_0=sum_yf / sum_f2, max_rel_error=float(np.max(rel)) if np.all(np.isfinite(rel)) else float("nan"), depth=int(depth))
    return df


# =============================================================================================
# 3. Gradient descent: the η/2·ρ̈ term (section 5, Eq. 23) and the discrete GD map.
# =============================================================================================


def gd_characteristic(eta: float, sum_f2: float, lam: float) -> dict:
    """Roots of Eq. 23 linearized at ρ_eq: (η/2)s² + s + β = 0 with β = 2(Σf̄² + λ).

    x = ρ − ρ_eq obeys (η/2)ẍ + ẋ + βx = 0, so s = (−1 ± √(1 − 2ηβ))/η. It is underdamped
    (damped oscillations) iff 2ηβ > 1, with decay rate γ = 1/η and angular frequency
    ω = √(2ηβ − 1)/η. (The paper's section 5 states other expressions for the frequency and the
    condition; these follow from its Eq. 23.) The discrete GD map it approximates,
    x_{j+1} = (1 − ηβ)x_j, oscillates (period 2) only for ηβ > 1 and diverges for ηβ > 2: the
    second-order ODE is a small-ηβ expansion (its slow root −β − ηβ²/2 + O(η²) matches
    log(1 − ηβ)/η) and its oscillations for ½ < ηβ < 1 have no counterpart in GD.

    Args:
        eta: learning rate η (> 0).
        sum_f2: Σ f̄_n² (the paper's sum).
        lam: λ in the paper's Eq. 23.

    Returns:
        dict with `beta`, `roots` (two complex), `underdamped`, `gamma`, `omega` (0 if not
        underdamped), `map_factor` = 1 − ηβ.

    Example:
        >>> c = gd_characteristic(40.0, 0.01, 0.01)
        >>> c["underdamped"], round(c["gamma"], 4), round(c["omega"], 4)
        (True, 0.025, 0.0371)
    """
    beta = 2.0 * (sum_f2 + lam)
    disc = complex(1.0 - 2.0 * eta * beta)
    sq = disc**0.5
    roots = ((-1.0 + sq) / eta, (-1.0 - sq) / eta)
    under = 2.0 * eta * beta > 1.0
    return {
        "beta": beta,
        "roots": roots,
        "underdamped": under,
        "gamma": 1.0 / eta,
        "omega": math.sqrt(2.0 * eta * beta - 1.0) / eta if under else 0.0,
        "map_factor": 1.0 - eta * beta,
    }


def _gd_closed_form(t: np.ndarray, x0: float, v0: float, eta: float, beta: float) -> np.ndarray:
    gamma = 1.0 / eta
    d = 1.0 - 2.0 * eta * beta
    if d < -1e-12:
        w = math.sqrt(-d) / eta
        return np.exp(-gamma * t) * (x0 * np.cos(w * t) + (v0 + gamma * x0) / w * np.sin(w * t))
    if d > 1e-12:
        s1, s2 = (-1.0 + math.sqrt(d)) / eta, (-1.0 - math.sqrt(d)) / eta
        a = (v0 - s2 * x0) / (s1 - s2)
        return a * np.exp(s1 * t) + (x0 - a) * np.exp(s2 * t)
    return (x0 + (v0 + gamma * x0) * t) * np.exp(-gamma * t)


def simulate_gd_flow(
    sum_yf: float = 1.0,
    sum_f2: float = 0.01,
    lam: float = 0.01,
    eta: float = 40.0,
    rho0: float = 0.01,
    rho_dot0: Optional[float] = None,
    t_end: float = 600.0,
    points: int = 601,
    substeps: int = 10,
) -> pd.DataFrame:
    """Integrate Eq. 23, (η/2)ρ̈ + ρ̇ = 2(Σf̄ − ρ(Σf̄² + λ)), with constant sums (RK4).

    With constant sums it is exactly a damped oscillator around ρ_eq = Σf̄/(Σf̄² + λ); see
    `gd_characteristic`. Defaults: margins ~0.01 (ρ_0 = 100, section 3.5), λ = 0.01 (ρ_eq = 50)
    and η = 40, so ηβ = 1.6 and both the ODE and the GD map (`simulate_gd_map`) show damped
    oscillations.

    Args:
        sum_yf: Σ_n f̄_n (the paper's sum of normalized margins).
        sum_f2: Σ_n f̄_n².
        lam: λ of Eq. 23 (≥ 0).
        eta: learning rate η (> 0).
        rho0: ρ(0).
        rho_dot0: ρ̇(0); default the first-order flow's 2(Σf̄ − ρ(0)(Σf̄² + λ)).
        t_end: final time (> 0).
        points: number of output times (≥ 2).
        substeps: RK4 steps between output times.

    Returns:
        DataFrame `t, rho, rho_closed_form, rho_first_order` (the last: the η = 0 gradient
        flow); `attrs` holds `gd_characteristic`'s values and `rho_eq`.

    Example:
        >>> df = simulate_gd_flow()
        >>> bool(df["rho"].max() > df.attrs["rho_eq"])   # overshoots ρ_eq
        True
    """
    if not (eta > 0 and t_end > 0 and lam >= 0 and sum_f2 + lam > 0 and points >= 2):
        raise ValueError("need eta > 0, t_end > 0, lam >= 0, sum_f2 + lam > 0, points >= 2")
    ch = gd_characteristic(eta, sum_f2, lam)
    beta = ch["beta"]
    rho_eq = sum_yf / (sum_f2 + lam)
    v0 = 2.0 * (sum_yf - rho0 * (sum_f2 + lam)) if rho_dot0 is None else float(rho_dot0)
    t = np.linspace(0.0, float(t_end), int(points))

    def f(_s: float, y: np.ndarray) -> np.ndarray:
        # (η/2)ρ̈ = 2(Σf̄ − ρ(Σf̄² + λ)) − ρ̇
        return np.array([y[1], (2.0 * (sum_yf - y[0] * (sum_f2 + lam)) - y[1]) * 2.0 / eta])

    sol = _rk4(f, [rho0, v0], t, int(substeps))
    df = pd.DataFrame(
        {
            "t": t,
            "rho": sol[:, 0],
            "rho_closed_form": rho_eq + _gd_closed_form(t, rho0 - rho_eq, v0, eta, beta),
            "rho_first_order": rho_eq + (rho0 - rho_eq) * np.exp(-beta * t),
        }
    )
    df.attrs.update({k: v for k, v in ch.items() if k != "roots"}, rho_eq=rho_eq, eta=eta)
    return df


def simulate_gd_map(
    sum_yf: float = 1.0, sum_f2: float = 0.01, lam: float = 0.01, eta: float = 40.0, rho0: float = 0.01, steps: int = 15
) -> pd.DataFrame:
    """The discrete GD step on ρ that Eq. 23 approximates: ρ_{j+1} = ρ_j + 2η(Σf̄ − ρ_j(Σf̄² + λ)).

    Args:
        sum_yf, sum_f2, lam, eta, rho0: as in `simulate_gd_flow`.
        steps: number of GD steps (≥ 1).

    Returns:
        DataFrame `step, t, rho` with t = η·step.

    Example:
        >>> simulate_gd_map(steps=2)["rho"].round(4).tolist()   # factor 1 − ηβ = −0.6 around 50
        [0.01, 79.994, 32.0036]
    """
    if steps < 1 or eta <= 0:
        raise ValueError("need steps >= 1 and eta > 0")
    rho = np.empty(int(steps) + 1)
    rho[0] = rho0
    for j in range(int(steps)):
        rho[j + 1] = rho[j] + 2.0 * eta * (sum_yf - rho[j] * (sum_f2 + lam))
    return pd.DataFrame({"step": np.arange(int(steps) + 1), "t": eta * np.arange(int(steps) + 1), "rho": rho})


# =============================================================================================
# 4. Per-run theory checks (written to theory.csv at the end of a run).
# =============================================================================================

THEORY_COLUMNS = ["check", "measured", "predicted", "rel_error", "note"]


def _rel(measured: float, predicted: float) -> float:
    if not (math.isfinite(measured) and math.isfinite(predicted)) or predicted == 0:
        return float("nan")
    return abs(measured - predicted) / abs(predicted)


def _check_row(check: str, measured: float, predicted: float, note: str) -> dict:
    return {"check": check, "measured": float(measured), "predicted": float(predicted), "rel_error": _rel(measured, predicted), "note": note}


def _classifier_checks(nc: Optional[pd.DataFrame], c: int, target: float) -> list[dict]:
    """The Eq. 34 and Eq. 35 rows from the last `nc` row that has them (target M of the true
    class: 1 for the plain square loss)."""
    rows: list[dict] = []
    cols = set(getattr(nc, "columns", []))
    if nc is None:
        return rows
    if {"w_norm_sq_mean", "w_norm_sq_eq34"} <= cols:
        nc_w = nc.dropna(subset=["w_norm_sq_mean", "w_norm_sq_eq34"]).sort_values("epoch")
        if not nc_w.empty:
            r = nc_w.iloc[-1]
            form = "2/(λC²)(ε − Cε²/(C−1))" if target == 1.0 else "2M²/(λC²)(kε − (k(C−1)+1)ε²/(C−1))"
            rows.append(
                _check_row(
                    "w_norm_sq_eq34", r["w_norm_sq_mean"], r["w_norm_sq_eq34"], f"Eq. 34 (project units) at epoch {int(r['epoch'])}: mean_c ||w_c||² vs {form}"
                )
            )
    if "w_dot_muG" in cols:
        nc_g = nc.dropna(subset=["w_dot_muG"]).sort_values("epoch")
        if not nc_g.empty:
            r = nc_g.iloc[-1]
            note = f"Eq. 35 at epoch {int(r['epoch'])}: mean_c <w_c, μ_G> vs M/C (M = {target:g}; bias-free classifier, Assumption 1)"
            rows.append(_check_row("w_dot_muG_eq35", r["w_dot_muG"], target / c, note))
    return rows


def _stationarity_identity(metrics: pd.DataFrame, nc: Optional[pd.DataFrame], c: int, lam: float) -> list[dict]:
    """Eq. 34's exact part: the stationarity identity of a bias-free one-hot square-loss head.

    With L = mean over N·C of (f − y)² and the coupled decay λ/2·||W||², ∂/∂w_c = 0 gives
    λw_c = (2/NC)·Σ_n (y_nc − f_nc)h_n; dotted with w_c and averaged over c:
    mean_c ||w_c||² = 2/(λC)·mean_{n,c} (y − f)f = 2/(λC²)·(ε − C·L), since mean (y − f)f =
    ε/C − L with ε = 1 − mean f_y. Exact at a stationary head for its features, whatever they are
    (no collapse assumed); Eq. 34 then follows from Assumption 1, under which L = ε²/(C − 1).
    Measured: `nc`'s `w_norm_sq_mean` at its last NC epoch; L: `metrics`' `train_loss` (the
    inference-mode train loss) at that epoch. Bias-free heads only (a decayed bias adds b_c² to
    the left side).
    """
    need_nc, need_m = {"epoch", "w_norm_sq_mean", "eps_gap"}, {"epoch", "train_loss"}
    if nc is None or not need_nc <= set(nc.columns) or not need_m <= set(metrics.columns):
        return []
    both = nc.dropna(subset=["w_norm_sq_mean", "eps_gap"]).merge(metrics[["epoch", "train_loss"]].dropna(), on="epoch")
    if both.empty:
        return []
    r = both.sort_values("epoch").iloc[-1]
    eps, loss = float(r["eps_gap"]), float(r["train_loss"])
    pred = 2.0 / (lam * c * c) * (eps - c * loss)
    note = (
        f"Eq. 34's exact stationarity identity at epoch {int(r['epoch'])}: mean_c ||w_c||² vs 2/(λC²)(ε − C·L), "
        f"ε = {eps:.4g}, L = train_loss = {loss:.4g} (exact for a stationary bias-free head; Assumption 1 replaces L by ε²/(C−1))"
    )
    return [_check_row("w_norm_sq_identity", r["w_norm_sq_mean"], pred, note)]


def theory_checks(
    metrics: pd.DataFrame,
    config: Optional[Mapping[str, Any]] = None,
    nc: Optional[pd.DataFrame] = None,
    *,
    n_train: Optional[int] = None,
) -> pd.DataFrame:
    """The toy model's predictions against one run's records, one row per check.

    Rows (μ, M, ρ of the last finite `metrics` row unless said; κ = ρ/ρ_L, 1 for BN/Lagrange):

    * `rho_eq` — Eq. 11: final ρ_L against κμ/(κ²M + λ′) (λ′ = `toy_weight_decay`). Meaningful
      once ρ has settled.
    * `loss_identity` — Lemma 9's first line / Eq. 14 without ρ̇. Scalar head: train_loss =
      1 − 2ρμ + ρ²M exactly. One-hot C = 2: train_loss = ¼(1 − 2ρμ + ρ²M) + ¼·mean(1 − f_0 − f_1)²
      exactly; the prediction is the margin part, a lower bound, and the excess is the common-mode
      loss (its rms gap is in the note). One-hot C > 2: no identity (NaN).
    * `margin_gap_lemma2` — Lemma 2: with equal margins 1/ρ_0 (ρ_0 = μ/M, the λ = 0 equilibrium
      of Eq. 11) the margin m = ρm̄ falls short of its target 1 by λ′ρ_0²/(1 + λ′ρ_0²); measured
      1 − mean m = 1 − ρμ. The paper writes ε = λρ_0; its own proof gives λρ_0²/(N + λρ_0²) in
      its sum normalization, the form used here. A margin spread σ² = M − μ² adds to the gap.
    * `eps_gap_lemma2` — one-hot head with `nc`: ε = 1 − mean f_y (`eps_gap` of the last `nc`
      row) against g·λ′ρ_0²/(1 + λ′ρ_0²), g = (C−1)/C (Assumption 1: ε = g(1 − m) when the
      outputs sum to 1).
    * `w_norm_sq_eq34` — Eq. 34 in project units (`nc`'s `w_norm_sq_mean` vs `w_norm_sq_eq34`).
    * `w_dot_muG_eq35` — Eq. 35: `nc`'s `w_dot_muG` vs M/C (1/C for the plain loss).
    * `w_norm_sq_identity` — Eq. 34's exact part, the stationarity identity of a bias-free one-hot
      head with λ > 0: `w_norm_sq_mean` vs 2/(λC²)(ε − C·train_loss) (`_stationarity_identity`);
      `w_norm_sq_eq34` is this identity with Assumption 1's L = ε²/(C − 1), so the two rows
      separate how stationary the head is from how symmetric its outputs are.

    `square_rescaled` runs get only the last two rows (the others assume targets 1, k = 1).
    * `rho_flow` / `rho_flow_late` — `compare_rho_flow` from epoch 0 / from the middle epoch:
      final ρ_L recorded vs integrated (the note gives the max relative error over the stretch);
      only when N is known (`n_train`, or `data.n_train` / `data.train_per_class` in `config`).

    `rel_error` = |measured − predicted| / |predicted| (NaN where undefined). Runs not trained
    with the square loss get an empty table.

    Args:
        metrics: the run's `metrics.csv` as a DataFrame.
        config: the resolved run config (nested as `config.yaml` or flat dotted keys).
        nc: the run's `nc.csv` as a DataFrame (optional).
        n_train: number of training samples N (optional; for the ρ-flow rows).

    Returns:
        DataFrame with columns `check, measured, predicted, rel_error, note`.

    Example:
        >>> checks = theory_checks(metrics, config, nc, n_train=600)  # doctest: +SKIP
        >>> checks.to_csv(rundir / "theory.csv", index=False)  # doctest: +SKIP
    """
    kind = _cfg(config, "loss.kind", "square")
    if kind not in ("square", "square_rescaled") or metrics is None or metrics.empty:
        return pd.DataFrame(columns=THEORY_COLUMNS)
    output, c = _head(config)
    if kind == "square_rescaled":  # the toy-model checks assume targets 1 (module docstring)
        return pd.DataFrame(_classifier_checks(nc, c, float(_cfg(config, "loss.M", 1.0))), columns=THEORY_COLUMNS)
    lam = float(_cfg(config, "optim.weight_decay", 0.0))
    lam_p = toy_weight_decay(lam, output, c)
    g = 1.0 if output == "scalar" else (c - 1) / c
    m = metrics.sort_values("epoch").reset_index(drop=True)
    key_cols = [k for k in ("rho", "margin_mean", "margin_sq_mean") if k in m.columns]
    finite = m[np.isfinite(m[key_cols].to_numpy(float)).all(axis=1)] if len(key_cols) == 3 else m.iloc[0:0]
    rows: list[dict] = []

    def add(check: str, measured: float, predicted: float, note: str) -> None:
        rows.append(_check_row(check, measured, predicted, note))

    if finite.empty:
        return pd.DataFrame(columns=THEORY_COLUMNS)

    def state(row: pd.Series) -> tuple[float, float, float, float, float]:
        rho = float(row["rho"])
        rho_l = float(row["rho_last"]) if "rho_last" in row.index and math.isfinite(row["rho_last"]) else rho
        return rho, rho_l, rho / rho_l, float(row["margin_mean"]), float(row["margin_sq_mean"])

    last = finite.iloc[-1]
    ep = int(last["epoch"])
    rho, rho_l, kappa, mu, M = state(last)
    head = f"{output} head, C={c}, λ′={lam_p:g}"

    # One epoch's inference-mode μ, M are noisy; the mean over the last tenth shows the level.
    tail = finite.iloc[-max(1, len(finite) // 10) :]
    k_tail = tail["rho"].to_numpy(float) / (tail["rho_last"].to_numpy(float) if "rho_last" in tail.columns else tail["rho"].to_numpy(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        eq_tail = k_tail * tail["margin_mean"].to_numpy(float) / (k_tail**2 * tail["margin_sq_mean"].to_numpy(float) + lam_p)
    add(
        "rho_eq",
        rho_l,
        kappa * mu / (kappa**2 * M + lam_p) if kappa**2 * M + lam_p > 0 else float("nan"),
        f"Eq. 11 at epoch {ep}: final ρ_L vs κμ/(κ²M+λ′), κ={kappa:.4g} ({head}); its mean over the last {len(tail)} rows is {np.nanmean(eq_tail):.4g}",
    )

    if "train_loss" in last.index and math.isfinite(last["train_loss"]):
        margin_part = 1.0 - 2.0 * rho * mu + rho * rho * M
        if output == "scalar":
            add("loss_identity", last["train_loss"], margin_part, f"epoch {ep}: train_loss = 1 − 2ρμ + ρ²M (exact for the scalar head)")
        elif c == 2:
            excess = max(4.0 * float(last["train_loss"]) - margin_part, 0.0)
            add(
                "loss_identity",
                last["train_loss"],
                margin_part / 4.0,
                f"epoch {ep}: train_loss = ¼(1−2ρμ+ρ²M) + ¼·mean(1−f_0−f_1)²; predicted = margin part (lower bound); rms(1−f_0−f_1) = {math.sqrt(excess):.3g}",
            )
        else:
            add("loss_identity", last["train_loss"], float("nan"), f"no identity through ρ, μ, M for the one-hot head with C={c} > 2")

    # Lemma 2: equal margins 1/ρ₀ with ρ₀ = μ/M give the gap λ′ρ₀²/(1 + λ′ρ₀²) of the margin
    # m = ρm̄ to its target 1; for the one-hot head ε = 1 − mean f_y = g·(1 − m) if f_0 + f_1 = 1.
    rho0 = mu / M if M > 0 else float("nan")
    gap = lam_p * rho0**2 / (1.0 + lam_p * rho0**2) if math.isfinite(rho0) else float("nan")
    add(
        "margin_gap_lemma2",
        1.0 - rho * mu,
        gap,
        f"Lemma 2 at epoch {ep}: 1 − mean m = 1 − ρμ vs λ′ρ₀²/(1+λ′ρ₀²), ρ₀ = μ/M = {rho0:.4g}; margin spread σ² = {M - mu * mu:.3g} vs λ′ (Lemma 2 assumes σ = 0)",
    )
    if output == "onehot" and nc is not None and "eps_gap" in getattr(nc, "columns", []):
        nc_f = nc[np.isfinite(nc["eps_gap"].to_numpy(float)) & nc["epoch"].isin(finite["epoch"])].sort_values("epoch")
        if not nc_f.empty:
            row = finite[finite["epoch"] == nc_f["epoch"].iloc[-1]].iloc[-1]
            r_e, _, _, mu_e, M_e = state(row)
            rho0_e = mu_e / M_e if M_e > 0 else float("nan")
            pred = g * lam_p * rho0_e**2 / (1.0 + lam_p * rho0_e**2) if math.isfinite(rho0_e) else float("nan")
            add(
                "eps_gap_lemma2",
                nc_f["eps_gap"].iloc[-1],
                pred,
                f"Lemma 2 + Assumption 1 at epoch {int(row['epoch'])}: ε = 1 − mean f_y (nc.csv) vs g·λ′ρ₀²/(1+λ′ρ₀²), g = (C−1)/C = {g:.3g}; "
                f"the margin alone gives g(1 − ρμ) = {g * (1.0 - r_e * mu_e):.3g}, the rest is the common mode f_0 + f_1 ≠ 1",
            )

    rows += _classifier_checks(nc, c, 1.0)
    # The identity holds for a bias-free head whose kernel is the decayed variable itself (not
    # weight norm's direction and gain); `model.bias` is a bool in config.yaml, a string when flat.
    bias_free = str(_cfg(config, "model.bias", False)).strip().lower() != "true"
    if output == "onehot" and lam > 0 and bias_free and _cfg(config, "model.normalization", "batchnorm") != "weightnorm":
        rows += _stationarity_identity(m, nc, c, lam)

    if _n_train(config, n_train) is not None and len(finite) >= 2:
        e0, e1 = float(finite["epoch"].iloc[0]), float(finite["epoch"].iloc[-1])
        for name, start in (("rho_flow", e0), ("rho_flow_late", e0 + (e1 - e0) / 2.0)):
            try:
                flow = compare_rho_flow(finite, config, n_train=n_train, start_epoch=start)
            except ValueError as err:
                add(name, float("nan"), float("nan"), f"not computed: {err}")
                continue
            if len(flow) < 2:
                continue
            add(
                name,
                flow["rho_recorded"].iloc[-1],
                flow["rho_predicted"].iloc[-1],
                f"ρ flow (common mode dropped) from epoch {flow.attrs['start_epoch']:g} to {e1:g}; max |pred−rec|/rec over it {flow.attrs['max_rel_error']:.3g}",
            )
    return pd.DataFrame(rows, columns=THEORY_COLUMNS)
