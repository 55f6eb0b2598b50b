"""Claims -> a report (the library behind `sqnc report OUT`).

`make_report(out)` makes sure the analysis tables are current (it runs `analyze` when
`OUT/analysis/` is missing or older than a run folder's files), draws the figures when they are
missing or older than the tables, judges every claim of `sqloss_nc.claims` from the tables, compares
the published setups (`PUBLISHED`) with their runs, and writes

| file | content |
|---|---|
| `OUT/report/claims.md` | a table of verdicts and control verdicts; one section per claim: sentence, source, evidence configs, statistic, rule, verdict and why, the control and its verdict, runs used, the evidence scale against the source's, the command that would decide it (when undecided), its protocols per scale with their rationale, the numbers, the claim's figures (or which command draws them); then the published setups against their published numbers |
| `OUT/report/claims.html` | the same as HTML, with the figures inline; linked from `OUT/figures/index.html` |
| `OUT/report/claims.csv` | one row per claim: number, id, verdict, why, control_verdict, control_why, decide, runs, settings, scale, source scale, numbers (JSON) |

Apart from the figures it draws through `sqloss_nc.figures`, it reads only `OUT/analysis/*.csv`.

Example:

```python
from pathlib import Path
from sqloss_nc.report import make_report
rep = make_report(Path("outputs"))
for r in rep.results:
    print(r.claim.number, r.verdict, r.why)
```
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .analysis import ANALYSIS_DIR, analyze, find_run_dirs
from .claims import CLAIMS, NOT_DISCRIMINATING, ClaimResult, Tables, _g, decide_command, evaluate_claims
from .protocol import SCALES
from .errors import UserError
from .rundir import atomic_write_text

REPORT_DIR = "report"
RUN_FILES = ("config.yaml", "status.json", "metrics.csv", "nc.csv", "nc_layers.csv", "spectra.csv", "theory.csv", "class_gram.csv", "margins.csv")


# ----------------------------------------------------------------------------- published setups


@dataclass(frozen=True)
class PublishedNumber:
    """A number a paper (or its stored training results) reports for its setup.

    Args:
        quantity: what it is, in words.
        table: `epochs` (metrics.csv columns) or `nc_epochs` (nc.csv columns).
        column: the column whose seed mean (`<column>_mean`) is compared.
        epoch: the epoch it is reported at (None: the last epoch of the run).
        value: the published value.
        note: how the value is read (e.g. "throughout").

    Example: `PublishedNumber("test accuracy", "epochs", "test_acc", 200, 0.7839)`
    """

    quantity: str
    table: str
    column: str
    epoch: int | None
    value: float
    note: str = ""


@dataclass(frozen=True)
class PublishedSetup:
    """A published multiclass setup reproduced by a config of `configs/published/`.

    Args:
        experiment: the config's `name` (its runs' folder under OUT).
        config: the config's path in this repository.
        source: the paper and code.
        setup: the setup in one line.
        numbers: its published numbers.

    Example: `PUBLISHED[0].numbers[0].value`
    """

    experiment: str
    config: str
    source: str
    setup: str
    numbers: tuple[PublishedNumber, ...] = ()


_ZHU = "Zhu, Ding et al. 2021 (code tding1/Neural-Collapse, its stored training results)"
_RANGAMANI = "Rangamani et al. 2023 (code mariuslindegaard/Intermediate_Neural_Collapse)"

PUBLISHED: tuple[PublishedSetup, ...] = (
    PublishedSetup(
        "zhu2021_resnet18_cifar10_ce",
        "configs/published/zhu2021_resnet18_cifar10_ce.yaml",
        _ZHU,
        "ResNet-18, cross-entropy, CIFAR-10, SGD lr 0.05 momentum 0.9, batch 128, WD 5e-4, 200 epochs, no augmentation",
        (
            PublishedNumber("train accuracy", "epochs", "train_acc", 50, 1.0),
            PublishedNumber("test accuracy", "epochs", "test_acc", 200, 0.7839),
            PublishedNumber("train ‖Σ_W‖_F", "nc_epochs", "sigma_w_fro", 0, 0.1015),
            PublishedNumber("train ‖Σ_W‖_F", "nc_epochs", "sigma_w_fro", 20, 0.0505),
            PublishedNumber("train ‖Σ_W‖_F", "nc_epochs", "sigma_w_fro", 50, 0.0138),
            PublishedNumber("train ‖Σ_W‖_F", "nc_epochs", "sigma_w_fro", 100, 0.00445),
            PublishedNumber("train ‖Σ_W‖_F", "nc_epochs", "sigma_w_fro", 200, 0.00139),
            PublishedNumber("test ‖Σ_W‖_F (train means)", "nc_epochs", "sigma_w_fro_test", None, 0.10, "~0.10 throughout"),
        ),
    ),
    PublishedSetup(
        "zhu2021_resnet18_mnist_ce",
        "configs/published/zhu2021_resnet18_mnist_ce.yaml",
        _ZHU,
        "the same on MNIST",
        (PublishedNumber("test accuracy", "epochs", "test_acc", 200, 0.9955),),
    ),
    PublishedSetup(
        "rangamani2023_resnet18_mnist_mse",
        "configs/published/rangamani2023_resnet18_mnist_mse.yaml",
        _RANGAMANI,
        "ResNet-18, MSE, MNIST, SGD momentum 0.9, WD 5e-4, batch 128, 350 epochs, lr 0.0184 x 0.1 twice",
    ),
    PublishedSetup(
        "rangamani2023_vgg11_cifar10_mse",
        "configs/published/rangamani2023_vgg11_cifar10_mse.yaml",
        _RANGAMANI,
        "VGG-11-BN, MSE, CIFAR-10, SGD momentum 0.9, WD 5e-4, batch 128, 350 epochs, lr 0.0255 x 0.1 twice",
    ),
)


@dataclass
class Comparison:
    """One published number against the runs.

    Args:
        setup, number: what is compared.
        measured: the runs' seed mean at `at_epoch` (NaN when there are none).
        at_epoch: the epoch it was read at (None without runs).
        note: why it is not at the published epoch, or why it is missing.

    Example: `compare_published(tables)["zhu2021_resnet18_cifar10_ce"][0].measured`
    """

    setup: PublishedSetup
    number: PublishedNumber
    measured: float
    at_epoch: Any
    note: str


def compare_published(tables: Tables, setups: tuple[PublishedSetup, ...] = PUBLISHED) -> dict[str, list[Comparison]]:
    """Each published setup's numbers against its runs (experiment = the config's name).

    The measured value is the seed mean at the published epoch (its nearest recorded epoch at or
    before it for the NC epochs); a run shorter than the epoch says where it ends.

    Example: `compare_published(load_tables(Path("outputs")))["zhu2021_resnet18_cifar10_ce"]`
    """
    out: dict[str, list[Comparison]] = {}
    for s in setups:
        rows = []
        for n in s.numbers:
            df = tables.get(n.table)
            col = f"{n.column}_mean"
            sub = df[df["experiment"] == s.experiment] if not df.empty and "experiment" in df else pd.DataFrame()
            if sub.empty:
                rows.append(Comparison(s, n, float("nan"), None, "no runs"))
                continue
            if col not in sub:
                rows.append(Comparison(s, n, float("nan"), None, f"{n.column} not in these runs (made before it was measured?)"))
                continue
            sub = sub[pd.to_numeric(sub[col], errors="coerce").notna()].sort_values("epoch")
            if sub.empty:
                rows.append(Comparison(s, n, float("nan"), None, f"{n.column} empty"))
                continue
            last = int(sub["epoch"].max())
            if n.epoch is None:
                r = sub.iloc[-1]
                rows.append(Comparison(s, n, float(r[col]), int(r["epoch"]), "last epoch"))
                continue
            if n.epoch > last:
                r = sub.iloc[-1]
                rows.append(Comparison(s, n, float(r[col]), int(r["epoch"]), f"run ends at epoch {last} (shortened): its last value"))
                continue
            at = sub[sub["epoch"] <= n.epoch].iloc[-1]
            note = "" if int(at["epoch"]) == n.epoch else f"nearest recorded epoch {int(at['epoch'])}"
            rows.append(Comparison(s, n, float(at[col]), int(at["epoch"]), note))
        out[s.experiment] = rows
    return out


# ----------------------------------------------------------------------------- freshness


def _newest_run_file(out: Path) -> float:
    run_dirs, _ = find_run_dirs(out)
    newest = 0.0
    for d in run_dirs:
        for name in RUN_FILES:
            p = d / name
            if p.exists():
                newest = max(newest, p.stat().st_mtime)
    return newest


def analysis_is_stale(out: Path) -> bool:
    """True when `OUT/analysis/summary.csv` is missing or older than a run folder's files.

    Example: `analysis_is_stale(Path("outputs"))`
    """
    summary = Path(out) / ANALYSIS_DIR / "summary.csv"
    if not summary.exists():
        return True
    return _newest_run_file(Path(out)) > summary.stat().st_mtime


def _figures_stale(out: Path) -> bool:
    manifest = out / "figures" / "manifest.json"
    summary = out / ANALYSIS_DIR / "summary.csv"
    return not manifest.exists() or (summary.exists() and summary.stat().st_mtime > manifest.stat().st_mtime)


# ----------------------------------------------------------------------------- the report


@dataclass
class Report:
    """What `make_report` did.

    Args:
        out: the output root.
        results: one `ClaimResult` per claim, in registry order.
        published: experiment -> its `Comparison` rows.
        files: file name -> path written under `OUT/report/`.
        analyzed, figures_drawn: whether it ran `analyze` / drew the figures.
        messages: figures that failed to draw.

    Example: `make_report(Path("outputs")).results[0].verdict`
    """

    out: Path
    results: list[ClaimResult]
    published: dict[str, list[Comparison]]
    files: dict[str, Path] = field(default_factory=dict)
    analyzed: bool = False
    figures_drawn: bool = False
    messages: list[str] = field(default_factory=list)


def _figure_files(out: Path, kinds: tuple[str, ...], experiments: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, caption) of the drawn figures of these kinds that show one of the experiments."""
    try:
        entries = json.loads((out / "figures" / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    found = []
    for e in entries:
        name = str(e.get("name", ""))
        if e.get("skipped") or not e.get("files"):
            continue
        kind = next((k for k in kinds if name == k or name.startswith(k + "_")), None)
        if kind is None:
            continue
        rest = name[len(kind) + 1 :]
        if any(rest == x or rest.startswith(x + "_") or rest.startswith(x) for x in experiments):
            found.append((name, str(e.get("caption", ""))))
    return found


def _numbers_text(numbers: dict[str, Any], limit: int | None = None) -> list[str]:
    items = list(numbers.items())[:limit] if limit else list(numbers.items())
    return [f"{k}: {_g(v, '.4g')}" for k, v in items]


def key_numbers(result: ClaimResult, limit: int = 3) -> str:
    """The first `limit` numbers of a result, one line (for the console table)."""
    return "; ".join(_numbers_text(result.numbers, limit))


def plural(n: int, word: str) -> str:
    """`1 run`, `2 runs`. Example: `plural(1, "run")`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _protocol_lines(c) -> list[str]:
    """One line per experiment and scale (an experiment read as evidence and as control, once)."""
    lines = []
    for scale in SCALES:
        roles: dict[tuple, list[str]] = {}
        first = {}
        for p in c.protocols[scale]:
            roles.setdefault(p.key(), []).append(p.role)
            first.setdefault(p.key(), p)
        for key, p in first.items():
            role = " and ".join(dict.fromkeys(roles[key]))
            lines.append(f"  - {scale}, {role}: `{p.experiment}` ({plural(p.n_runs, 'run')} x {p.steps:,} steps, `{p.config}`): {p.rationale}")
    return lines


def _used_experiments(r: ClaimResult) -> tuple[str, ...]:
    return tuple(dict.fromkeys([e for e, _ in r.settings] + list(r.claim.experiments) + list(r.claim.control_experiments)))


def _no_figure_line(out: Path, r: ClaimResult) -> str:
    kinds = ", ".join(r.claim.figures)
    if not r.settings:
        return f"(no figure: no runs of this claim; `{r.decide or decide_command(r.claim, out)}` makes them)"
    return f"(no {kinds} figure shows these runs in {out / 'figures'}; `sqnc figures {out} --only {','.join(r.claim.figures)}` draws them or says what they need)"


def _md(rep: Report) -> str:
    out = rep.out
    lines = [
        "# Claims judged from the runs",
        "",
        f"`sqnc report {out}`: every claim of `sqloss_nc/claims/`, judged from `{out / ANALYSIS_DIR}` "
        "by the rule written under it, and its negative control judged by the same rule. Verdicts: supported, not supported, "
        "inconclusive (with why), no runs, rule does not discriminate (the control passed too). "
        "The scale of the evidence (the runs used) stands next to the source's.",
        "",
        "| # | claim | verdict | control | runs | evidence scale | source's scale |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rep.results:
        lines.append(
            f"| {r.claim.number} | [{r.claim.id}](#{r.claim.number}-{r.claim.id}) | **{r.verdict}** | {r.control_verdict} | {r.runs} | {r.scale.text()} | {r.claim.source_scale.text()} |"
        )
    undecided = [r for r in rep.results if r.decide]
    if len(undecided) == len(rep.results):
        lines += ["", f"To decide them: `sqnc reproduce {out}` (every claim's cpu protocols), or `--claims <id>` for some."]
    elif undecided:
        lines += ["", f"To decide the claims left undecided: `sqnc reproduce {out} --claims {','.join(r.claim.id for r in undecided)}`."]
    for r in rep.results:
        c = r.claim
        lines += [
            "",
            f"## {c.number}. {c.id}",
            "",
            f"**{c.sentence}**",
            "",
            f"- source: {c.source}",
            f"- evidence configs: {', '.join(f'`{x}`' for x in c.configs) or '—'}",
            f"- statistic: {c.statistic}",
            f"- rule: {c.rule}",
            f"- **verdict: {r.verdict}** — {r.why}",
            f"- control: {c.control} — {r.control_verdict}{' (' + r.control_why + ')' if r.control_why else ''}",
            f"- runs used: {plural(r.runs, 'run')} in {plural(len(r.settings), 'setting')}{': ' + '; '.join(f'{e} / {s}' for e, s in r.settings) if r.settings else ''}",
            f"- evidence scale: {r.scale.text()} (source: {c.source_scale.text()})",
        ]
        if r.decide:
            lines.append(f"- to decide: `{r.decide}`")
        lines += ["- protocols:"] + _protocol_lines(c)
        if r.numbers:
            lines += ["", "| number | value |", "|---|---|"]
            lines += [f"| {k} | {_g(v, '.4g')} |" for k, v in r.numbers.items()]
        figs = _figure_files(out, c.figures, _used_experiments(r))
        for name, caption in figs:
            lines += ["", f"![{name}](../figures/{name}.png)", "", f"*{name}*: {caption}"]
        if not figs:
            lines += ["", _no_figure_line(out, r)]
    lines += ["", "## Published setups", ""]
    for s in PUBLISHED:
        lines += [f"### {s.experiment}", "", f"{s.setup}. Source: {s.source}. Config: `{s.config}`.", ""]
        comps = rep.published.get(s.experiment, [])
        if not comps:
            lines += ["No published numbers are recorded for this setup here; its runs are judged by the claims above (claim 12 for the MSE ResNet).", ""]
            continue
        lines += ["| quantity | epoch | published | measured | note |", "|---|---|---|---|---|"]
        for cmp in comps:
            n = cmp.number
            lines.append(
                f"| {n.quantity} | {n.epoch if n.epoch is not None else 'last'} | {_g(n.value, '.4g')}{' (' + n.note + ')' if n.note else ''} | "
                f"{_g(cmp.measured, '.4g') if not math.isnan(cmp.measured) else '—'}{f' (epoch {cmp.at_epoch})' if cmp.at_epoch is not None else ''} | {cmp.note} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


_VERDICT_COLOR = {"supported": "#1a7f37", "not supported": "#cf222e", "inconclusive": "#9a6700", "no runs": "#6e7781", NOT_DISCRIMINATING: "#8250df"}


def _html(rep: Report) -> str:
    e = html.escape
    out = rep.out
    parts = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8"><title>sqloss-nc claims</title>',
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}img{max-width:100%;border:1px solid #ddd}"
        ".v{font-weight:bold}</style></head><body>",
        "<h1>Claims judged from the runs</h1>",
        f"<p><code>sqnc report {e(str(out))}</code> — tables in <code>../{ANALYSIS_DIR}/</code>, figures in "
        '<a href="../figures/index.html">../figures/index.html</a>.</p>',
        "<table><tr><th>#</th><th>claim</th><th>verdict</th><th>control</th><th>runs</th><th>evidence scale</th><th>source's scale</th></tr>",
    ]
    for r in rep.results:
        col = _VERDICT_COLOR.get(r.verdict, "#000")
        parts.append(
            f'<tr><td>{r.claim.number}</td><td><a href="#{e(r.claim.id)}">{e(r.claim.id)}</a></td>'
            f'<td class="v" style="color:{col}">{e(r.verdict)}</td><td>{e(r.control_verdict)}</td><td>{r.runs}</td><td>{e(r.scale.text())}</td><td>{e(r.claim.source_scale.text())}</td></tr>'
        )
    parts.append("</table>")
    for r in rep.results:
        c = r.claim
        col = _VERDICT_COLOR.get(r.verdict, "#000")
        parts += [
            f'<h2 id="{e(c.id)}">{c.number}. {e(c.id)}</h2>',
            f"<p><b>{e(c.sentence)}</b></p><ul>",
            f"<li>source: {e(c.source)}</li>",
            f"<li>evidence configs: {', '.join('<code>' + e(x) + '</code>' for x in c.configs)}</li>",
            f"<li>statistic: {e(c.statistic)}</li>",
            f"<li>rule: {e(c.rule)}</li>",
            f'<li>verdict: <span class="v" style="color:{col}">{e(r.verdict)}</span> — {e(r.why)}</li>',
            f"<li>control: {e(c.control)} — {e(r.control_verdict)}{e(' (' + r.control_why + ')') if r.control_why else ''}</li>",
            f"<li>runs used: {plural(r.runs, 'run')} in {plural(len(r.settings), 'setting')}</li>",
            f"<li>evidence scale: {e(r.scale.text())} (source: {e(c.source_scale.text())})</li>",
        ]
        if r.decide:
            parts.append(f"<li>to decide: <code>{e(r.decide)}</code></li>")
        parts.append("</ul>")
        if r.numbers:
            parts.append("<table>" + "".join(f"<tr><td>{e(k)}</td><td>{e(_g(v, '.4g'))}</td></tr>" for k, v in r.numbers.items()) + "</table>")
        figs = _figure_files(out, c.figures, _used_experiments(r))
        if not figs:
            parts.append(f"<p>{e(_no_figure_line(out, r))}</p>")
        for name, caption in figs:
            parts.append(f'<figure><img src="../figures/{e(name)}.png" alt="{e(name)}"><figcaption><b>{e(name)}</b>: {e(caption)}</figcaption></figure>')
    parts.append("<h2>Published setups</h2>")
    for s in PUBLISHED:
        parts.append(f"<h3>{e(s.experiment)}</h3><p>{e(s.setup)}. Source: {e(s.source)}. Config: <code>{e(s.config)}</code>.</p>")
        comps = rep.published.get(s.experiment, [])
        if not comps:
            parts.append("<p>No published numbers are recorded for this setup here.</p>")
            continue
        parts.append("<table><tr><th>quantity</th><th>epoch</th><th>published</th><th>measured</th><th>note</th></tr>")
        for cmp in comps:
            n = cmp.number
            meas = "—" if math.isnan(cmp.measured) else _g(cmp.measured, ".4g") + (f" (epoch {cmp.at_epoch})" if cmp.at_epoch is not None else "")
            parts.append(
                f"<tr><td>{e(n.quantity)}</td><td>{n.epoch if n.epoch is not None else 'last'}</td><td>{_g(n.value, '.4g')} {e(n.note)}</td><td>{e(meas)}</td><td>{e(cmp.note)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _csv(rep: Report) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "number": r.claim.number,
                "id": r.claim.id,
                "verdict": r.verdict,
                "why": r.why,
                "control_verdict": r.control_verdict,
                "control_why": r.control_why,
                "decide": r.decide,
                "runs": r.runs,
                "settings": len(r.settings),
                "scale": r.scale.text(),
                "source_scale": r.claim.source_scale.text(),
                "numbers": json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.numbers.items()}, default=str),
            }
            for r in rep.results
        ]
    )


INDEX_LINK = '<p><a href="../report/claims.html">Claims report</a> (<code>sqnc report</code>): each claim\'s verdict from these runs.</p>'


def link_from_figures(out: Path) -> bool:
    """Add a link to the claims report to `OUT/figures/index.html` (once), after its title.

    Example: `link_from_figures(Path("outputs"))`
    """
    index = Path(out) / "figures" / "index.html"
    if not index.exists():
        return False
    text = index.read_text()
    if "../report/claims.html" in text:
        return True
    marker = "</h1>"
    if marker not in text:
        return False
    atomic_write_text(index, text.replace(marker, marker + INDEX_LINK, 1))
    return True


def make_report(out: Path, figures: bool = True) -> Report:
    """Judge every claim on OUT's runs and write `OUT/report/claims.{md,html,csv}`.

    Args:
        out: the output root of `sqnc run` (runs under `<experiment>/<run_id>/`).
        figures: draw the figures when missing or stale (False: use what is there).

    Returns:
        A `Report` with the claims' results and the files written.

    Raises:
        UserError: OUT is not a folder or holds no runs (from `analyze`).

    Example: `make_report(Path("outputs")).files["claims.md"]`
    """
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"OUT: {out} is not a folder (give the --out of `sqnc run`)")
    rep = Report(out, [], {})
    if analysis_is_stale(out):
        analyze(out)
        rep.analyzed = True
    if figures and _figures_stale(out):
        from .figures import draw_figures

        try:
            results = draw_figures(out)
            rep.figures_drawn = True
            rep.messages += [f"figure {r.name}: {r.skipped}" for r in results if r.skipped and r.skipped.startswith("failed")]
        except Exception as err:  # noqa: BLE001 - the verdicts do not need the figures
            rep.messages.append(f"figures not drawn: {type(err).__name__}: {err}")
    tables = Tables.load(out)
    rep.results = evaluate_claims(tables, CLAIMS)
    rep.published = compare_published(tables)
    rdir = out / REPORT_DIR
    rdir.mkdir(parents=True, exist_ok=True)
    for name, text in (("claims.md", _md(rep)), ("claims.html", _html(rep)), ("claims.csv", _csv(rep).to_csv(index=False, lineterminator="\n"))):
        atomic_write_text(rdir / name, text)
        rep.files[name] = rdir / name
    link_from_figures(out)
    return rep


def short_why(result: ClaimResult, limit: int = 90) -> str:
    """The reason of a verdict cut to its first clause and `limit` characters (the console table;
    claims.md has it whole)."""
    text = result.why.split("; ")[0].split(" — ")[0]
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def claims_table(rep: Report):
    """The console summary: a rich table (claim, verdict, its control's verdict, runs used) that
    reads in 80 columns without cutting words, then one line per judged claim with its reason cut
    to its first clause, then the command that would decide the claims left undecided (claims.md
    has everything whole).

    Example: `rich.print(claims_table(make_report(Path("outputs"))))`
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = {"supported": "green", "not supported": "red", "inconclusive": "yellow", "no runs": "dim", NOT_DISCRIMINATING: "magenta"}
    t = Table(title=f"claims — {rep.out}", caption=f"details: {rep.out / REPORT_DIR / 'claims.md'}")
    t.add_column("claim", no_wrap=True)
    t.add_column("verdict")
    t.add_column("control")
    t.add_column("runs", justify="right")
    for r in rep.results:
        t.add_row(
            f"{r.claim.number}. {r.claim.id}",
            Text(r.verdict, style=style.get(r.verdict, "")),
            Text(r.control_verdict, style=style.get(r.control_verdict, "")),
            str(r.runs),
        )
    parts: list = [t]
    parts += [Text(f"{r.claim.number}. {short_why(r)}") for r in rep.results if r.verdict != "no runs"]
    undecided = [r.claim.id for r in rep.results if r.decide]
    if len(undecided) == len(rep.results):
        parts.append(Text(f"to decide them: sqnc reproduce {rep.out} (every claim), or --claims ID for one"))
    elif undecided:
        parts.append(Text(f"to decide the rest: sqnc reproduce {rep.out} --claims ID, ID being one of " + ", ".join(undecided)))
    return Group(*parts)
