"""Write docs/reproduction.md from a reproduction: the machine, the exact commands that made the
runs, each experiment's runs and wall time (from `OUT/analysis/runs.csv`), then the report's claims
and published setups (`OUT/report/claims.md`, figures left out: they live under OUT, which is not
committed).

Two inputs:
- `--reproduce FILE`: the `--json` of a real `sqnc reproduce OUT` (issue 26): its command, budget,
  estimate and wall time, the load, and per claim its verdict, its control's verdict, and its
  protocols (steps, elapsed τ, rationale) lead the document.
- repro scripts (issue 21): the `run` lines of the given shell scripts are the commands.

    python tools/reproduction_doc.py OUT --reproduce repro.json --load-log load.log --note "..." > docs/reproduction.md
    python tools/reproduction_doc.py OUT tools/repro_cpu.sh tools/repro_published_cpu.sh --note "..." > docs/reproduction.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd


def commands(script: Path) -> list[str]:
    """The `run ...` lines of a repro script (continuation lines joined), as `sqnc run ...`."""
    text = script.read_text().replace("\\\n", " ")
    # expand a bash array of shared options (SHORT=(...)) where it is used
    arrays = dict(re.findall(r"^(\w+)=\((.*)\)$", text, flags=re.M))
    for name, value in arrays.items():
        text = text.replace(f'"${{{name}[@]}}"', value)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("run "):
            out.append("sqnc run " + re.sub(r"\s+", " ", line[4:]) + ' --out "$OUT"')
    return out


def reproduce_lines(doc: dict) -> list[str]:
    """The header facts and the verdict table of a `sqnc reproduce --json` document, then each
    included claim's protocols (evidence and control) with their steps, elapsed τ and rationale."""

    def minutes(v):
        return (f"{v / 60:.1f} min" if v < 600 else f"{v / 60:.0f} min") if isinstance(v, (int, float)) else "none"

    def tau(p):
        t = p.get("elapsed_tau")
        text = f"{t:.1f} τ" if t is not None else "no WD"
        return text + (" (+ runs without WD)" if t is not None and p.get("runs_without_wd") else "")

    load = doc.get("load") or {}
    lines = [
        f"Command: `{doc.get('command') or 'sqnc reproduce'}` (scale {doc.get('scale')}, --jobs {doc.get('jobs')}).",
        "",
        f"Budget {minutes(doc.get('budget_s'))}, estimated {minutes(doc.get('estimate_s'))}, wall time "
        f"{minutes(doc.get('wall_s'))}; 1-minute load average {load.get('start', '—')} at the start, "
        f"{load.get('end', '—')} at the end.",
        "",
        "| claim | verdict | control | evidence: runs × steps (elapsed τ) | control: runs × steps | est. | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in doc.get("claims", []):
        ev = "; ".join(f"{p['experiment']}: {p['runs']} × {p['steps']:,} ({tau(p)})" for p in c.get("protocol", [])) or "—"
        ct = "; ".join(f"{p['experiment']}: {p['runs']} × {p['steps']:,} ({tau(p)})" for p in c.get("control", [])) or "—"
        verdict = c.get("verdict") or ("left out: " + c["left_out"] if c.get("left_out") else "—")
        why = str(c.get("why") or "").replace("|", "\\|")
        control = c.get("control_verdict") or "—"
        lines.append(f"| {c['number']} {c['claim']} | {verdict} | {control} | {ev} | {ct} | {minutes(c.get('estimate_s'))} | {why} |")
    lines += ["", "### Protocols", ""]
    for c in doc.get("claims", []):
        if not c.get("included"):
            continue
        lines.append(f"**{c['number']} {c['claim']}**: {c.get('sentence', '')}")
        lines.append("")
        for p in c.get("protocol", []) + c.get("control", []):
            what = f"{p['runs']} run(s) × {p['steps']:,} steps, {tau(p)}"
            lines.append(f"- {p['role']} `{p['experiment']}` (`{p['config']}`): {what}: {p['rationale']}")
        lines.append("")
    return lines


def load_line(path: Path) -> str:
    """Median and range of the 1-minute load average sampled during the run (one line per sample:
    a time, then /proc/loadavg's fields)."""
    loads = [float(line.split()[1]) for line in path.read_text().splitlines() if len(line.split()) >= 2]
    if not loads:
        return "Load during the run: not sampled."
    s = pd.Series(loads)
    return (
        f"Load during the run ({len(loads)} samples, one a minute): 1-minute load average median {s.median():.2f}, "
        f"range {s.min():.2f}–{s.max():.2f} on 2 cores (the run's own workers; nothing else ran)."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("scripts", type=Path, nargs="*")
    ap.add_argument("--reproduce", type=Path, help="the --json of `sqnc reproduce OUT`")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to add under the header")
    ap.add_argument("--load-log", type=Path, help="a log of `date +%%H:%%M:%%S` + /proc/loadavg lines taken during the run")
    args = ap.parse_args()
    if not args.scripts and args.reproduce is None:
        ap.error("give repro scripts or --reproduce FILE")
    out = args.out
    runs = pd.read_csv(out / "analysis" / "runs.csv")
    env = {}
    for p in sorted(out.glob("*/*/status.json")):
        env = json.loads(p.read_text()).get("environment", {})
        if env:
            break
    machine = (
        f"Machine: {env.get('device', '?')} (an Intel Xeon VM; no GPU), "
        f"sqloss_nc {env.get('sqloss_nc', '?')}, {env.get('backend', '?')} {env.get(env.get('backend', ''), '')}, "
        f"Keras {env.get('keras', '?')}, Python {env.get('python', '?')}."
    )
    if args.reproduce is not None:
        doc = json.loads(args.reproduce.read_text())
        lines = [
            "# Reproduction on this machine: the claims judged by `sqnc reproduce`",
            "",
            "Generated by `tools/reproduction_doc.py --reproduce` from the JSON of a real `sqnc reproduce` run and its "
            "`sqnc report` (issue 26). Each claim ran its protocols at the scale named below (steps counted on the "
            "theory's time scale τ, each protocol's rationale says what was shrunk) and a negative control judged by "
            "the same rule.",
            "",
            machine,
            "",
        ]
        for note in args.note:
            lines += [note, ""]
        if args.load_log is not None:
            lines += [load_line(args.load_log), ""]
        lines += ["## Verdicts", ""] + reproduce_lines(doc)
    else:
        lines = [
            "# Reproduction on this machine: the claims judged from shortened CPU runs",
            "",
            "Generated by `tools/reproduction_doc.py` from `sqnc report` (issue 21). **Every run here is shortened** "
            "(fewer images, epochs, seeds and settings than the sources; the scale of each claim's evidence stands "
            "next to the source's in the table), so a verdict here is about these runs, not about the claim at the "
            "paper's scale: `inconclusive` says which is missing.",
            "",
            machine.replace("; no GPU)", ", shared with other jobs while these ran; no GPU)"),
            "",
        ]
        for note in args.note:
            lines += [note, ""]
        lines += ["## Commands", "", "```bash", 'OUT=outputs/repro; DATA=../shared/data/cifar10-jpeg.zip']
        for s in args.scripts:
            lines += [f"# {s}"] + commands(s)
        lines += [f"sqnc report {out}", "```", ""]
    lines += runs_lines(runs) + report_lines(out)
    print("\n".join(lines).rstrip() + "\n")


def runs_lines(runs: pd.DataFrame) -> list[str]:
    """Per experiment: runs, done, epochs, N, the runs' summed wall time; and the total."""
    lines = ["## Runs", "", "| experiment | runs | done | epochs | N train | wall time (sum over runs) |", "|---|---|---|---|---|---|"]
    for exp, g in runs.groupby("experiment", sort=False):
        wall = pd.to_numeric(g["wall_time_s"], errors="coerce").sum() / 60
        done = int((g["state"] == "done").sum())
        ep = pd.to_numeric(g["last_epoch"], errors="coerce")
        n = pd.to_numeric(g["n_train"], errors="coerce")
        lines.append(f"| {exp} | {len(g)} | {done} | {int(ep.max()) if ep.notna().any() else '—'} | {int(n.max()) if n.notna().any() else '—'} | {wall:.1f} min |")
    total = pd.to_numeric(runs["wall_time_s"], errors="coerce").sum() / 60
    return lines + ["", f"Total: {len(runs)} runs, {total:.0f} min of run wall time.", ""]


def report_lines(out: Path) -> list[str]:
    """`OUT/report/claims.md` one heading level down, its figures replaced by where they are under OUT."""
    report = (out / "report" / "claims.md").read_text().splitlines()
    body = []
    skip_caption = False
    for line in report:
        if line.startswith("![") or line.startswith("(no figure drawn"):
            skip_caption = line.startswith("![")
            continue
        if skip_caption and line.startswith("*") and "*: " in line:
            name = line.split("*")[1]
            body.append(f"(figure `{name}`: `OUT/figures/{name}.png`)")
            skip_caption = False
            continue
        if line.startswith("# "):
            line = "#" + line  # one level down under this document's title
        elif line.startswith("## ") or line.startswith("### "):
            line = "#" + line
        body.append(line)
    return ["## The report (`sqnc report`)", ""] + body


if __name__ == "__main__":
    main()
