"""The one error type the CLI turns into a one-line message and exit code 2, and how a library's
error becomes part of such a line."""


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
