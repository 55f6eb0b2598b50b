"""Issue 27's measure of record: what an NC epoch costs against a plain one, from a run's files.

The median wall time of the epochs that measured neural collapse (the epochs of `nc.csv`) over the
median of the other epochs, each epoch's time being the difference of consecutive `elapsed_s` in
`metrics.csv`. Epoch 1 (tracing, compilation) and epoch 0 (the initial measurement) are left out.
An epoch's `elapsed_s` is stamped after its measurement and before its checkpoint, so an epoch's
checkpoint (and an NC epoch's extra file syncs) land in the next epoch's time: with NC on every
other epoch the plain epochs carry them; the default `log` schedule leaves few plain epochs after
an NC one.

    python tools/nc_cost.py outputs/quickstart/seed=0 [more run folders]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

FIRST_EPOCH = 2


def nc_cost(rundir) -> dict:
    """{"nc_s", "plain_s" (medians), "ratio", "nc_epochs", "plain_epochs", "nc_iqr", "plain_iqr"} of a run folder."""
    rundir = Path(rundir)
    metrics = pd.read_csv(rundir / "metrics.csv")
    nc_path = rundir / "nc.csv"
    nc_epochs = set(pd.read_csv(nc_path)["epoch"]) if nc_path.exists() else set()
    dt = metrics.set_index("epoch")["elapsed_s"].diff().dropna()
    dt = dt[dt.index >= FIRST_EPOCH]
    is_nc = dt.index.isin(list(nc_epochs))
    nc, plain = dt[is_nc], dt[~is_nc]
    med = lambda s: float(s.median()) if len(s) else float("nan")  # noqa: E731
    iqr = lambda s: (float(s.quantile(0.25)), float(s.quantile(0.75))) if len(s) else (float("nan"),) * 2  # noqa: E731
    return {
        "nc_s": med(nc),
        "plain_s": med(plain),
        "ratio": med(nc) / med(plain) if len(nc) and len(plain) else float("nan"),
        "nc_epochs": len(nc),
        "plain_epochs": len(plain),
        "nc_iqr": iqr(nc),
        "plain_iqr": iqr(plain),
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for run in argv:
        try:
            c = nc_cost(run)
        except (FileNotFoundError, KeyError, pd.errors.EmptyDataError) as err:
            print(f"error: {run}: not a run folder with metrics.csv ({err})", file=sys.stderr)
            return 2
        print(
            f"{run}: NC epoch {c['nc_s']:.3f} s (IQR {c['nc_iqr'][0]:.3f}-{c['nc_iqr'][1]:.3f}, {c['nc_epochs']} epochs), "
            f"plain {c['plain_s']:.3f} s (IQR {c['plain_iqr'][0]:.3f}-{c['plain_iqr'][1]:.3f}, {c['plain_epochs']}): ratio {c['ratio']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
