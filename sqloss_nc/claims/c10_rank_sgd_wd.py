"""Claim 10 (`rank_sgd_wd`): SGD with weight decay lowers the rank of the weight matrices, more with
smaller batches and larger WD, and not without WD (Xu, Rangamani, Liao, Galanti, Poggio 2023;
Galanti et al. 2022).

Rule, on rank_final.csv (rank / min(out, fan_in) of each hidden layer, averaged over layers, per
experiment, batch size and WD; every setting run for the same steps within `STEP_MATCH`, else
inconclusive: at equal epochs a small batch takes many more steps), for the rank and the
stable rank alike: (i) at the largest WD every minibatch rank >= `DROP` below WD 0's; (ii) at the
largest WD, in batch-size order (full batch = N), no rank more than `DROP` above the next larger
batch's (an inversion contradicts) and at least one rise of >= `DROP`; (iii) at WD 0 the rank
falls < `NO_WD_DROP` from init (rank_epochs.csv). Supported when every part holds for both
measures; not supported when a part is contradicted for either; else inconclusive.

Control: the same rule with a weight decay of 1e-5 (0.015 τ in the protocol's steps) as "the
largest WD": part (i) must fail.

Example: `from sqloss_nc.claims.c10_rank_sgd_wd import CLAIM; CLAIM.protocols["cpu"]`
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, _g, pairs
from .experiments import CPU_RANK, CPU_RANK_GD, CPU_RANK_TINY, PAPER_RANK, PAPER_RANK_GD, PAPER_RANK_TINY, RANK, RANK_GD, as_control
from .rules import Clock, spearman

DROP = 0.05  # a rank "falls" when it is >= 5% below the comparison
NO_WD_DROP = 0.2  # without WD a fall of >= 20% from init contradicts "not without WD"
STEP_MATCH = 0.1  # every setting's steps within 10% of the others'


def _parts(ev: Evidence, rf: pd.DataFrame, measure: str) -> tuple[list[str], list[str], dict[str, Any]]:
    rf = rf.copy()
    rf["rel"] = pd.to_numeric(rf[f"{measure}_mean"], errors="coerce") / pd.to_numeric(rf["n_singular"], errors="coerce")
    per = rf.groupby(["experiment", "setting", "batch", "batch_size_numeric", "optim.weight_decay"], dropna=False)["rel"].mean().reset_index()
    per = per.groupby(["batch", "batch_size_numeric", "optim.weight_decay"], dropna=False)["rel"].mean().reset_index()
    wds = sorted(per["optim.weight_decay"].astype(float).unique())
    name = measure.replace("_", " ")
    if len(wds) < 2 or wds[0] != 0:
        return [INCONCLUSIVE], [f"too few settings: needs WD 0 and WD > 0, has WD {', '.join(_g(w) for w in wds)}"], {}
    top = wds[-1]
    at_top = per[per["optim.weight_decay"].astype(float) == top].sort_values("batch_size_numeric")
    at_zero = per[per["optim.weight_decay"].astype(float) == 0].set_index("batch")["rel"]
    nums: dict[str, Any] = {f"{name}/max, WD {_g(r['optim.weight_decay'])}, batch {r['batch']}": r["rel"] for _, r in per.iterrows()}
    verdicts, parts = [], []
    mini = at_top[at_top["batch"] != "full"]
    drops = [1 - r["rel"] / at_zero[r["batch"]] for _, r in mini.iterrows() if r["batch"] in at_zero.index]
    low = min(drops) if drops else float("nan")
    nums[f"{name} drop WD {_g(top)} vs 0 (minibatch, smallest)"] = low
    if not drops:
        verdicts.append(INCONCLUSIVE)
        parts.append(f"no minibatch pair at WD 0 and {_g(top)} ({name})")
    else:
        verdicts.append(SUPPORTED if low >= DROP else NOT_SUPPORTED)
        parts.append(f"WD {_g(top)} {'lowers' if low >= DROP else 'does not lower'} the minibatch {name} (smallest drop {low:.0%})")
    ordered = at_top[["batch", "rel"]].to_numpy().tolist()
    rel = dict(ordered)
    inversions = [(a, b) for (a, ra), (b, rb) in zip(ordered, ordered[1:]) if ra > rb * (1 + DROP)]
    rises = [(a, b) for (a, ra), (b, rb) in zip(ordered, ordered[1:]) if rb > ra * (1 + DROP)]
    nums[f"Spearman(batch, {name}) at WD {_g(top)}"] = spearman(at_top["batch_size_numeric"].astype(float).tolist(), at_top["rel"].tolist()) if len(at_top) >= 2 else float("nan")
    if len(ordered) < 2:
        verdicts.append(INCONCLUSIVE)
        parts.append("too few batch sizes (needs >= 2 at the largest WD)")
    elif inversions:
        verdicts.append(NOT_SUPPORTED)
        parts.append(f"smaller batches do not give a lower {name}: " + ", ".join(f"batch {a} {rel[a]:.2f} > batch {b} {rel[b]:.2f}" for a, b in inversions))
    elif rises:
        verdicts.append(SUPPORTED)
        parts.append(f"{name} rises with batch size")
    else:
        verdicts.append(INCONCLUSIVE)
        parts.append(f"{name} within {DROP:.0%} across batch sizes: no batch-size effect to read")
    re = ev.rank_epochs
    zero_drop = float("nan")
    if not re.empty and f"{measure}_mean" in re:
        zs = set(rf.loc[rf["optim.weight_decay"].astype(float) == 0, "setting"])
        z = re[re["setting"].isin(zs) & (re["layer"] != "classifier")]
        if not z.empty:
            e0 = z[z["epoch"] == z["epoch"].min()].groupby(["experiment", "setting"])[f"{measure}_mean"].mean()
            e1 = z[z["epoch"] == z["epoch"].max()].groupby(["experiment", "setting"])[f"{measure}_mean"].mean()
            zero_drop = float((1 - e1 / e0).max())
    nums[f"largest {name} drop from init at WD 0"] = zero_drop
    if math.isnan(zero_drop):
        verdicts.append(INCONCLUSIVE)
        parts.append(f"no initial {name} of the WD-0 runs")
    elif zero_drop >= NO_WD_DROP:
        verdicts.append(NOT_SUPPORTED)
        parts.append(f"without WD the {name} still fell {zero_drop:.0%} from init")
    else:
        verdicts.append(SUPPORTED)
        parts.append(f"without WD the {name} stays within {zero_drop:.0%} of init")
    return verdicts, parts, nums


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rf = ev.rank_final
    used = pairs(ev.summary)
    if rf.empty or "rank_mean" not in rf:
        return Verdict(INCONCLUSIVE, "no spectra (spectra.csv) in these runs", used=used)
    rf = rf[rf["layer"] != "classifier"]  # the classifier's rank is bounded by C
    steps = {Clock.of(ev, r).steps for _, r in ev.summary.iterrows()}
    if max(steps) > (1 + STEP_MATCH) * min(steps):
        return Verdict(INCONCLUSIVE, f"not at matched steps: the settings ran {min(steps)} to {max(steps)} steps (batch sizes are compared at equal steps)", used=used)
    verdicts, parts, nums = [], [], {"steps": max(steps)}
    for measure in ("rank", "stable_rank"):
        if f"{measure}_mean" not in rf:
            continue
        v, p, n = _parts(ev, rf, measure)
        verdicts += v
        parts += p
        nums.update(n)
    why = "; ".join(parts)
    if all(v == SUPPORTED for v in verdicts):
        return Verdict(SUPPORTED, why, nums, used)
    if NOT_SUPPORTED in verdicts:
        return Verdict(NOT_SUPPORTED, why, nums, used)
    return Verdict(INCONCLUSIVE, why, nums, used)


CLAIM = Claim(
    number=10,
    id="rank_sgd_wd",
    sentence="SGD with weight decay lowers the rank of the weight matrices, more with smaller batches and larger WD, and not without WD.",
    source="Xu, Rangamani, Liao, Galanti, Poggio 2023 (the journal version); Galanti et al. 2022",
    statistic="rank_final.csv: rank/min(out, fan_in) and stable rank/min(out, fan_in) per hidden layer, averaged over layers, per batch size and WD, at matched steps; rank_epochs.csv for the WD-0 runs' initial rank",
    rule=f"at matched steps (within {STEP_MATCH:.0%}), for rank and stable rank: (i) at the largest WD every minibatch value >= {DROP:.0%} below WD 0's; (ii) at the largest WD, in batch-size order (full batch = N), "
    f"no value more than {DROP:.0%} above the next larger batch's and at least one rise of >= {DROP:.0%}; (iii) at WD 0 a fall < {NO_WD_DROP:.0%} from init. "
    "Supported when all hold for both, not supported when any is contradicted, else inconclusive",
    control="the same rule with WD 1e-5 as the largest WD",
    source_scale=Scale(None, None, None, "batch sizes x WD (journal version)"),
    figures=("rank", "spectra"),
    judge=judge,
    protocols={
        "cpu": (CPU_RANK, CPU_RANK_GD, as_control(CPU_RANK_TINY)),
        "paper": (PAPER_RANK, PAPER_RANK_GD, as_control(PAPER_RANK_TINY)),
    },
    legacy_configs=(RANK, RANK_GD),
)
