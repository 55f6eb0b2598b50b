"""The one error type the CLI turns into a one-line message and exit code 2, how a library's
error becomes part of such a line, and the stop a signal asked for (`request_stop`)."""


class UserError(ValueError):
    """A mistake in the user's input (config, data, paths); its message is one line naming it."""


def first_words(err: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, shortened at a word boundary (never mid-word), to
    quote inside a one-line message.

    Example: `first_words(ValueError("a b c"), 3)` is `"a …"`.
    """
    first = (str(err).strip().splitlines() or [""])[0]
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"


# A stop asked for by a signal (the CLI turns SIGTERM / SIGHUP into a KeyboardInterrupt raised from
# its handler; a `--jobs` worker gets SIGINT from its driver). Python runs that handler between
# bytecodes wherever the main thread is; where the exception is swallowed there (a finalizer, a
# callback from native code, which print "Exception ignored" and go on) an endless run would train
# on, `running`, and never exit. Training re-raises the remembered stop at its next epoch end, so
# the run still ends `interrupted`.
_pending_stop: BaseException | None = None

# How long a stopping process may take before it gives up on itself. Stopping writes one status
# file once the main thread is back in Python, which takes a step (or, at a run's start, one
# compilation): seconds. A process still alive this long after the signal is stuck (CI saw two
# such hangs on JAX that no rerun reproduced); it then prints every thread's stack on stderr (where
# it hung: the bug report) and exits, code 1. The run keeps its last checkpoint and resumes from
# it; its status still says `running`, as after a kill. faulthandler's watchdog is a C thread: it
# fires even while the main thread holds the interpreter in native code.
STOP_GRACE_S = 120.0


def request_stop(err: BaseException | None, grace_s: float | None = STOP_GRACE_S) -> None:
    """Remember `err` (the interrupt a signal handler is about to raise) for `raise_if_stopped`
    and arm the stop's watchdog (`STOP_GRACE_S`; `grace_s=None`: none). `None` forgets a pending
    stop and disarms its watchdog (a command installing its handlers starts with none pending).

    Example: a signal handler does `err = KeyboardInterrupt("stopped by SIGTERM");
    request_stop(err); raise err`.
    """
    import faulthandler

    global _pending_stop
    _pending_stop = err
    if err is None:
        faulthandler.cancel_dump_traceback_later()
    elif grace_s is not None:
        import sys

        try:
            faulthandler.dump_traceback_later(grace_s, exit=True, file=sys.__stderr__)
        except (AttributeError, ValueError, OSError, RuntimeError):  # no usable stderr (closed, pythonw)
            pass


def raise_if_stopped() -> None:
    """Raise the remembered stop, if a signal asked for one (called at every epoch end)."""
    if _pending_stop is not None:
        raise _pending_stop
