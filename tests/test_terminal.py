"""`sqnc run` in a real (pseudo-)terminal of 80 columns (issue 20): the progress bars keep their
epoch counts and times whole, and Ctrl-C freezes the bar at once (no clock ticking on while the
training loop unwinds, no redraw after the error line)."""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import SYN
from test_cli_newcomer import sets

pty = pytest.importorskip("pty")
ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIME = r"(\d+:\d\d:\d\d|-:--:--)"


def in_terminal(args, cols=80, interrupt_when=None):
    """Run `sqnc ARGS` on a pty of `cols` columns; with `interrupt_when` (a regex), send SIGINT
    one second after it first appears. Returns (exit code, output, output from the SIGINT on)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": str(cols), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    out, seen, at, deadline = b"", None, None, time.time() + 600
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            continue  # drain everything written so far before deciding anything
        if interrupt_when and seen is None and re.search(interrupt_when, ANSI.sub("", out.decode("utf-8", "replace"))):
            seen = time.time()
        if seen and at is None and time.time() - seen > 1.0:
            at = len(out)
            proc.send_signal(signal.SIGINT)
        if proc.poll() is not None or (interrupt_when and seen is None and time.time() > deadline - 420):
            break  # ended, or what should trigger the interrupt never showed (3 minutes)
    else:
        proc.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    os.close(master)
    text = out.decode("utf-8", "replace")
    return proc.returncode, text, (out[at:].decode("utf-8", "replace") if at is not None else "")


def frames(text):
    """Every redraw of every line, ANSI codes removed."""
    return [f for f in re.split(r"[\r\n]+", ANSI.sub("", text)) if f.strip()]


def test_progress_bars_keep_counts_and_times_whole_at_80_columns(tmp_path):
    overrides = [*SYN, "optim.epochs=3", "sweep={model.init_scale: [0.01, 5]}", "track.nc_epochs=none"]
    rc, text, _ = in_terminal(["run", *sets(overrides), "--out", str(tmp_path / "o")])
    assert rc == 0, text[-3000:]
    bars = [f for f in frames(text) if re.search(r"\b\d+/3\b", f)]
    assert bars, text[-3000:]
    for bar in bars:
        assert len(bar.rstrip()) <= 80, bar
        assert "…" not in bar, bar  # was `0:0…` and `-:--:…`
        assert len(re.findall(TIME, bar)) == 2, bar  # elapsed and remaining, whole
        assert bar.split()[0] in ("init=0.01_seed=0", "init=5_seed=0"), bar  # the run id, whole


def test_ctrl_c_freezes_the_bar_and_says_how_to_resume(tmp_path):
    out = tmp_path / "o"
    overrides = [*(o for o in SYN if not o.startswith("optim.epochs")), "optim.epochs=100000", "track.margin_epochs=none", "track.nc_epochs=none"]
    rc, text, after = in_terminal(["run", *sets(overrides), "--out", str(out)], interrupt_when=r"\b[1-9]\d*/100000")
    assert rc == 130, text[-3000:]
    redrawn = [f for f in frames(after) if "/100000" in f]
    # The frozen bar only: the final frame of the stopped display (and a refresh racing the
    # signal). Before, rich redrew the bar 10 times a second while the loop unwound (seconds), its
    # clock ticking, and once more after the error line.
    assert len(set(redrawn)) <= 1 and len(redrawn) <= 2, redrawn
    tail = frames(after)
    assert tail[-1].startswith("error: interrupted; rerun the same command to resume"), tail[-3:]
    status = json.loads((out / "quickstart" / "seed=0" / "status.json").read_text())
    assert status["state"] == "interrupted" and "rerun the same command to resume" in status["reason"]
