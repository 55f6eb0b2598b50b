"""Claim 12 (`mse_resnet`): training a ResNet with the MSE loss, NC1 falls by orders of magnitude and
the least-squares term L_⊥ becomes negligible against the total (Han, Papyan & Donoho 2022).

Rule per setting (the square-loss settings of the evidence; every setting of the control), in the
terminal phase (from the first NC epoch with train error 0): supported when NC1 fell >= `ORDERS` x
since the phase began to <= 0.1 and L_⊥ (nc_epochs.csv mse_perp) is <= `PERP_NEGLIGIBLE` of
mse_total at the last NC epoch; not supported when, >= 5τ into the phase, NC1 stays >= 1 and no
longer falls, or L_⊥ > `PERP_LARGE` of the total and settled; else inconclusive (also without
interpolation). Combined over settings as claim 4 (`rules.combine`).

Control: the same rule on the same net trained with cross-entropy.

Example: `from sqloss_nc.claims.c12_mse_resnet import CLAIM; CLAIM.control`
"""

from __future__ import annotations

import math

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, mean, square
from .experiments import CPU_RESNET, CPU_RESNET_CE, PAPER_RESNET, PAPER_RESNET_CE, RESNET_CE, as_control
from .rules import NC1_HIGH, NC1_LEVEL, SETTLED_CHANGE, fall_from_start, judge_each, long_in_terminal_phase, tail_change, terminal_phase

ORDERS = 10.0  # NC1 falls >= 10x (an order of magnitude) within the terminal phase
PERP_NEGLIGIBLE = 0.1  # L_perp / total <= 10% at the end
PERP_LARGE = 0.5  # ... and > 50% on a run no longer changing is "not negligible"

_RESNET_MSE = (
    "configs/nc/resnet18_cifar10_mse.yaml",
    "configs/nc/resnet18_mnist_mse.yaml",
    "configs/nc/resnet18_fashion_mnist_mse.yaml",
    "configs/nc/resnet18_narrow_cifar10_cpu.yaml",
    "configs/published/rangamani2023_resnet18_mnist_mse.yaml",
)


def _setting(ev: Evidence, r) -> tuple[str, str, dict]:
    nc1 = ev.curve("nc_epochs", r, "nc1")
    perp, total = mean(r, "mse_perp"), mean(r, "mse_total")
    share = perp / total if total > 0 else float("nan")
    tag = f"[{r['setting']}]"
    nums = {f"L_perp / total at the end {tag}": share, f"NC1 final {tag}": float(nc1.iloc[-1]) if len(nc1) else float("nan")}
    start = terminal_phase(ev, r)
    if len(nc1) < 2 or math.isnan(share):
        return INCONCLUSIVE, "NC1 or the MSE decomposition not measured at >= 2 epochs", nums
    if start is None:
        return INCONCLUSIVE, f"the net does not interpolate (train acc {mean(r, 'train_acc'):.3f})", nums
    fall, falling = fall_from_start(nc1[nc1.index >= start])
    final = float(nc1.iloc[-1])
    nums[f"NC1 fall in the terminal phase {tag}"] = fall
    if fall >= ORDERS and final <= NC1_LEVEL and share <= PERP_NEGLIGIBLE:
        return SUPPORTED, f"NC1 fell {fall:.3g}x in the terminal phase to {final:.3g}, L_perp {share:.1%} of the total", nums
    long_enough, lived = long_in_terminal_phase(ev, r, start)
    perp_moving = tail_change(ev.curve("nc_epochs", r, "mse_perp"))
    if long_enough and ((final >= NC1_HIGH and not falling) or (share > PERP_LARGE and perp_moving < SETTLED_CHANGE)):
        return NOT_SUPPORTED, f"NC1 {final:.3g} (fell {fall:.3g}x), L_perp {share:.1%} of the total, no longer changing, {lived}", nums
    return INCONCLUSIVE, f"NC1 fell {fall:.3g}x to {final:.3g} (needs {ORDERS:g}x to <= {NC1_LEVEL}), L_perp {share:.1%} (needs <= {PERP_NEGLIGIBLE:.0%}), {lived}", nums


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.summary if control else ev.settings(loss__kind=square)
    if rows.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no square-loss run")
    return judge_each(ev, rows, _setting)


CLAIM = Claim(
    number=12,
    id="mse_resnet",
    sentence="Training a ResNet with the MSE loss, NC1 falls by orders of magnitude and the least-squares term L_⊥ becomes negligible against the total.",
    source="Han, Papyan & Donoho 2022 (MSE decomposition)",
    statistic="per square-loss setting: NC1 over the terminal phase (nc_epochs.csv) and mse_perp / mse_total at the last NC epoch (summary.csv)",
    rule=f"per setting: supported if NC1 fell >= {ORDERS:g}x in the terminal phase to <= {NC1_LEVEL} and L_⊥ <= {PERP_NEGLIGIBLE:.0%} of the total; not supported if >= 5τ "
    f"into it NC1 >= {NC1_HIGH:g} and no longer falling, or L_⊥ > {PERP_LARGE:.0%} and settled; else inconclusive; combined as claim 4",
    control="the same rule on the net trained with cross-entropy",
    source_scale=Scale(350, 50000, 1, "ResNet-18 on MNIST, Fashion-MNIST, CIFAR-10"),
    figures=("ncpanel", "decomp"),
    judge=judge,
    protocols={"cpu": (CPU_RESNET, as_control(CPU_RESNET_CE)), "paper": (PAPER_RESNET, as_control(PAPER_RESNET_CE))},
    legacy_configs=_RESNET_MSE,
    legacy_controls=(RESNET_CE,),
)
