"""`sqnc simulate`: the toy model's ρ dynamics (paper sections 3.4, 5 and Figure 10).

Thin: parse and check options, call `sqloss_nc.theory`, write CSVs, print a short summary.
Wired into the main app with `register(app)`.

    sqnc simulate --rho-flow outputs/quickstart/seed=0   # RUN_DIR/rho_flow.csv, max rel. error
    sqnc simulate --logistic --out outputs/simulations   # logistic.csv (Eq. 51, Figure 10)
    sqnc simulate --gd --eta 40                          # gd_flow.csv + gd_map.csv (Eq. 23)

Bad input (no mode, a missing run directory, a number out of range) ends with one line on
stderr and exit code 2; numbers are parsed here rather than by Click so that a bad one is also a
single line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


class _BadInput(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _num(name: str, text: str, *, lo: Optional[float] = None, lo_open: bool = False, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except (TypeError, ValueError):
        raise _BadInput(f"{name}: {text!r} is not {'an integer' if integer else 'a number'}") from None
    if not math.isfinite(value):
        raise _BadInput(f"{name}: {text!r} is not finite")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise _BadInput(f"{name}: must be {'>' if lo_open else '>='} {lo:g}, got {text}")
    return value


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def _rho_flow(run_dir: Path, start_epoch: Optional[float]) -> None:
    if not run_dir.is_dir():
        raise _BadInput(f"--rho-flow: run directory {run_dir} does not exist")
    if not (run_dir / "metrics.csv").is_file():
        raise _BadInput(f"--rho-flow: {run_dir / 'metrics.csv'} does not exist (not a run directory?)")
    from sqloss_nc.theory import compare_rho_flow  # after the checks: importing the package loads TensorFlow

    try:
        df = compare_rho_flow(run_dir, start_epoch=start_epoch)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise _BadInput(f"--rho-flow {run_dir}: {err}") from None
    path = run_dir / "rho_flow.csv"
    df.to_csv(path, index=False)
    a = df.attrs
    last = df.iloc[-1]
    console.print(
        _table(
            f"ρ flow vs recorded ρ ({run_dir})",
            [
                ("ODE", f"dρ/dt = {a['rate_k']:g}·(μ − ρ(M + λ′)), λ′ = {a['lambda_prime']:g}"),
                ("epochs", f"{df['epoch'].iloc[0]:g} → {last['epoch']:g} ({a['steps_per_epoch']} steps/epoch, t = {last['t']:.4g})"),
                ("final ρ", f"recorded {last['rho_recorded']:.4g}, predicted {last['rho_predicted']:.4g}, ρ_eq {last['rho_eq']:.4g}"),
                ("max rel. error", f"{a['max_rel_error']:.3g} (final {a['final_rel_error']:.3g})"),
                ("written", str(path)),
            ],
        )
    )


def _logistic(out: Path, sum_yf: float, sum_f2: float, rho0: float, depth: int, t_end: float, points: int) -> None:
    from sqloss_nc.theory import simulate_logistic

    df = simulate_logistic(sum_yf=sum_yf, sum_f2=sum_f2, rho0=rho0, depth=depth, t_end=t_end, points=points)
    path = out / "logistic.csv"
    df.to_csv(path, index=False)
    err = df.attrs["max_rel_error"]
    console.print(
        _table(
            "logistic ρ dynamics (Eq. 51, Figure 10)",
            [
                ("ODE", f"dρ/dt = {2 * depth}·ρ^{(2 * depth - 2) / depth:g}·({sum_yf:g} − {sum_f2:g}·ρ)"),
                ("ρ_0 = Σyf/Σf²", f"{df.attrs['rho_0']:.4g}"),
                ("ρ(0) → ρ(t_end)", f"{rho0:g} → {df['rho_numeric'].iloc[-1]:.4g} at t = {t_end:g}"),
                ("numeric vs closed form", f"max rel. error {err:.2e}" if math.isfinite(err) else "no closed form for depth > 2"),
                ("written", str(path)),
            ],
        )
    )


def _gd(out: Path, sum_yf: float, sum_f2: float, lam: float, eta: float, rho0: float, t_end: float, points: int) -> None:
    from sqloss_nc.theory import simulate_gd_flow, simulate_gd_map

    flow = simulate_gd_flow(sum_yf=sum_yf, sum_f2=sum_f2, lam=lam, eta=eta, rho0=rho0, t_end=t_end, points=points)
    gd = simulate_gd_map(sum_yf=sum_yf, sum_f2=sum_f2, lam=lam, eta=eta, rho0=rho0, steps=max(1, int(t_end // eta)))
    flow_path, map_path = out / "gd_flow.csv", out / "gd_map.csv"
    flow.to_csv(flow_path, index=False)
    gd.to_csv(map_path, index=False)
    a = flow.attrs
    regime = (
        f"damped oscillation, decay γ = 1/η = {a['gamma']:.4g}, ω = {a['omega']:.4g}"
        if a["underdamped"]
        else "overdamped (2ηβ ≤ 1): no oscillation"
    )
    factor = a["map_factor"]
    gd_regime = "diverges" if abs(factor) >= 1 else ("oscillates (period 2)" if factor < 0 else "monotone")
    console.print(
        _table(
            "gradient descent on ρ (Eq. 23)",
            [
                ("ODE", f"(η/2)ρ̈ + ρ̇ = 2({sum_yf:g} − ρ({sum_f2:g} + {lam:g})), η = {eta:g}"),
                ("ρ_eq", f"{a['rho_eq']:.4g}; ηβ = {eta * a['beta']:.4g}"),
                ("ODE regime", regime),
                ("ρ max (ODE)", f"{flow['rho'].max():.4g}"),
                ("GD map", f"factor 1 − ηβ = {factor:.3g}: {gd_regime}"),
                ("written", f"{flow_path}, {map_path}"),
            ],
        )
    )


def register(app: typer.Typer) -> None:
    """Add the `simulate` command to a Typer app.

    Args:
        app: the `sqnc` Typer application (or any Typer app with a callback).

    Example:
        >>> app = typer.Typer()
        >>> register(app)
    """

    @app.command()
    def simulate(
        rho_flow: Optional[Path] = typer.Option(
            None,
            "--rho-flow",
            metavar="RUN_DIR",
            help="Integrate the toy-model ρ flow from a run's recorded margins; writes RUN_DIR/rho_flow.csv.",
        ),
        logistic: bool = typer.Option(False, "--logistic", help="Simulate the logistic ρ equation (Eq. 51, Figure 10)."),
        gd: bool = typer.Option(False, "--gd", help="Simulate gradient descent on ρ: Eq. 23's η/2·ρ̈ term and the discrete GD map."),
        out: Path = typer.Option(Path("outputs/simulations"), "--out", "-o", help="Folder for the --logistic / --gd CSVs."),
        start_epoch: Optional[str] = typer.Option(
            None, "--start-epoch", metavar="EPOCH", help="--rho-flow: start from the recorded ρ at this epoch."
        ),
        sum_yf: str = typer.Option("1.0", "--sum-yf", metavar="FLOAT", help="Σ y_n f_n of the normalized net (constant)."),
        sum_f2: str = typer.Option("0.01", "--sum-f2", metavar="FLOAT", help="Σ f_n² (constant); ρ_0 = Σyf/Σf² = 100 by default."),
        rho0: str = typer.Option("0.01", "--rho0", metavar="FLOAT", help="ρ(0), a small initialization."),
        depth: str = typer.Option("2", "--depth", metavar="INT", help="--logistic: number of layers L (closed form for L <= 2)."),
        eta: str = typer.Option("40", "--eta", metavar="FLOAT", help="--gd: learning rate η (oscillations need 2η(Σf² + λ) > 1/2)."),
        lam: str = typer.Option("0.01", "--lam", metavar="FLOAT", help="--gd: weight decay λ of Eq. 23."),
        t_end: Optional[str] = typer.Option(None, "--t-end", metavar="FLOAT", help="Final time (default 5 for --logistic, 15η for --gd)."),
        points: str = typer.Option("501", "--points", metavar="INT", help="Output times per simulation."),
    ) -> None:
        """Toy-model ρ dynamics: the ρ flow against a run (--rho-flow), Eq. 51 (--logistic), Eq. 23 (--gd)."""
        try:
            if rho_flow is None and not logistic and not gd:
                raise _BadInput("choose at least one of --rho-flow RUN_DIR, --logistic, --gd")
            s_yf = _num("--sum-yf", sum_yf, lo=0.0, lo_open=True)
            s_f2 = _num("--sum-f2", sum_f2, lo=0.0, lo_open=True)
            r0 = _num("--rho0", rho0, lo=0.0, lo_open=True)
            d = int(_num("--depth", depth, lo=1, integer=True))
            e = _num("--eta", eta, lo=0.0, lo_open=True)
            lm = _num("--lam", lam, lo=0.0)
            n_pts = int(_num("--points", points, lo=2, integer=True))
            t_fin = None if t_end is None else _num("--t-end", t_end, lo=0.0, lo_open=True)
            start = None if start_epoch is None else _num("--start-epoch", start_epoch, lo=0.0)
            if rho_flow is not None:
                _rho_flow(rho_flow, start)
            if logistic or gd:
                try:
                    out.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise _BadInput(f"--out: cannot create {out}: {err.strerror or err}") from None
            if logistic:
                _logistic(out, s_yf, s_f2, r0, d, 5.0 if t_fin is None else t_fin, n_pts)
            if gd:
                _gd(out, s_yf, s_f2, lm, e, r0, 15.0 * e if t_fin is None else t_fin, n_pts)
        except _BadInput as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
