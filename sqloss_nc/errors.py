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
# its handler). Python runs that handler between bytecodes wherever the main thread is; where the
# exception is swallowed there (a finalizer, a callback from native code, which print "Exception
# ignored" and go on) an endless run would train on, `running`, and never exit. Training re-raises
# the remembered stop at its next epoch end, so the run still ends `interrupted`.
_pending_stop: BaseException | None = None


def request_stop(err: BaseException | None) -> None:
    """Remember `err` (the interrupt a signal handler is about to raise) for `raise_if_stopped`;
    None forgets it (a command installing its handlers starts with no stop pending)."""
    global _pending_stop
    _pending_stop = err


def raise_if_stopped() -> None:
    """Raise the remembered stop, if a signal asked for one (called at every epoch end)."""
    if _pending_stop is not None:
        raise _pending_stop
