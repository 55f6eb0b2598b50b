"""The per-run progress bar of `sqnc run` in a terminal: fits the terminal's width and stops at once
on Ctrl-C.

Rich squeezes a progress line that is wider than the terminal by cutting its columns, so in an
80-column terminal a sweep's bars read `0:0…` and `-:--:…`. `EpochProgress` sizes the line
itself: the times and the epoch count are always whole; the run id is shortened and the loss/ρ
text is shortened or left out until the line fits.

On Ctrl-C (or SIGTERM / SIGHUP where the CLI turns them into an interrupt) the display stops at
once. Python runs a signal handler only when the main thread next executes Python code, which can
be seconds later when it waits inside TensorFlow; meanwhile rich's refresh thread kept redrawing
the bar with a ticking clock, and drew it again after the error line. So the bar listens on
`signal.set_wakeup_fd`, which the interpreter's C-level handler writes to the moment the signal
arrives, and a small thread stops the display then.

Example:

```python
bar = EpochProgress(total_epochs=60, first_epoch=1, description="seed=0", logger=logger, console=console)
trainer.fit(..., callbacks=[logger, bar])
```
"""

from __future__ import annotations

import os
import signal
import threading

import keras

TIME_WIDTH = 8  # h:mm:ss up to 9:59:59 is 7 characters; one spare for 10 hours and more


def fit_line(width: int, description: str, counts: str, stats: list[str], bar_max: int = 30) -> tuple[str, int, str]:
    """(description, bar width, stats) for one progress line of `width` columns: the counts and
    the two times whole, the description cut (with `…`) and the longest `stats` variant that fits
    (`""` when none does).

    Args:
        width: the console width.
        description: the run id.
        counts: `epoch/total`, as shown.
        stats: the loss/accuracy/ρ text, longest first.
        bar_max: the bar's width when there is room.

    Example: `fit_line(80, "init=0.01_wd=0.01_seed=0", "60/60", ["loss 0.09 acc 1.000/0.810 ρ 2.3", "ρ 2.3"])`.
    """
    fixed = len(counts) + 2 * TIME_WIDTH + 5  # counts, two times, five one-blank gaps
    bar_min = 10
    desc = description if len(description) <= 32 else description[:31] + "…"
    room = width - fixed - bar_min - len(desc)
    if room < 0:  # not even the bar fits beside the id: cut the id further
        keep = max(8, len(desc) + room)
        desc = desc if len(desc) <= keep else desc[: keep - 1] + "…"
        room = width - fixed - bar_min - len(desc)
    chosen = next((s for s in stats if len(s) + 1 <= room), "")
    bar = max(bar_min, min(bar_max, width - fixed - len(desc) - (len(chosen) + 1 if chosen else 0)))
    return desc, bar, chosen


class EpochProgress(keras.callbacks.Callback):
    """A progress bar over epochs showing loss, accuracy and ρ, sized to the terminal.

    Args:
        total_epochs: the run's last epoch.
        first_epoch: the first epoch trained in this session (resume).
        description: text shown left of the bar (the run id).
        logger: the `RunLogger` whose latest row is displayed.
        console: the rich Console (default: a new one).
    """

    def __init__(self, total_epochs: int, first_epoch: int, description: str, logger, console=None):
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.table import Column

        self.logger, self.total, self.description = logger, total_epochs, description
        self.console = console or Console()
        self.bar = BarColumn(bar_width=10)
        whole = dict(no_wrap=True, overflow="ignore")
        self.progress = Progress(
            TextColumn("[bold]{task.description}", markup=True, table_column=Column(**whole)),
            self.bar,
            MofNCompleteColumn(table_column=Column(**whole)),
            TextColumn("{task.fields[stats]}", markup=False, table_column=Column(**whole)),
            TimeElapsedColumn(table_column=Column(**whole, min_width=TIME_WIDTH)),
            TimeRemainingColumn(table_column=Column(**whole, min_width=TIME_WIDTH)),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total_epochs, completed=first_epoch - 1, stats="")
        self._wakeup: tuple[int, int, int] | None = None  # (read fd, write fd, previous wakeup fd)

    def _stats(self) -> list[str]:
        r = self.logger.last_row or {}
        if not r:
            return []
        return [
            f"loss {r['train_loss']:.4g}  acc {r['train_acc']:.3f}/{r['test_acc']:.3f}  ρ {r['rho']:.4g}",
            f"loss {r['train_loss']:.3g} ρ {r['rho']:.4g}",
            f"ρ {r['rho']:.4g}",
        ]

    def _update(self, **kw) -> None:
        done = int(self.progress.tasks[0].completed) + kw.get("advance", 0)
        from rich.markup import escape

        desc, bar, stats = fit_line(self.console.width, self.description, f"{done}/{self.total}", self._stats())
        self.bar.bar_width = bar
        self.progress.update(self.task, description=escape(desc), stats=stats, **kw)

    def _stop_display(self) -> None:
        self.progress.stop()

    def _hook_signals(self) -> None:
        """Stop the display the moment SIGINT, SIGTERM or SIGHUP arrives (any signal with a Python
        handler is written to the wakeup fd by the interpreter's C handler, in whatever thread);
        the interrupt itself is raised by the handlers as before."""
        if threading.current_thread() is not threading.main_thread() or self._wakeup is not None:
            return
        stops = {int(getattr(signal, n)) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            previous = signal.set_wakeup_fd(write)
        except ValueError:  # not possible here: no immediate stop, the handlers still interrupt
            os.close(read), os.close(write)
            return
        self._wakeup = (read, write, previous)

        def watch():
            while True:
                try:
                    got = os.read(read, 1)
                except OSError:
                    return
                if not got:
                    return  # closed by _unhook_signals
                if got[0] in stops:
                    self._stop_display()

        threading.Thread(target=watch, name="sqnc-progress-signals", daemon=True).start()

    def _unhook_signals(self) -> None:
        if self._wakeup is None:
            return
        read, write, previous = self._wakeup
        self._wakeup = None
        signal.set_wakeup_fd(previous)
        os.close(write)  # the watcher reads end-of-file and returns

    def on_train_begin(self, logs=None):
        self._hook_signals()
        self.progress.start()
        self._update()

    def on_epoch_end(self, epoch, logs=None):
        self._update(advance=1)

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Stop the display and restore the signal handlers (idempotent)."""
        self._stop_display()
        self._unhook_signals()
