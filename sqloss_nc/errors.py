"""The one error type the CLI turns into a one-line message and exit code 2."""


class UserError(ValueError):
    """A mistake in the user's input (config, data, paths); its message is one line naming it."""
