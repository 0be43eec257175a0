"""User-facing errors: one line, naming the fix. The CLI prints them and exits with code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad config, impossible setting, missing file).

    The message is a single line that says what is wrong and how to fix it.
    """


class ConfigError(UserError):
    """Unknown key, wrong type or impossible value in a configuration."""


class DivergenceError(UserError):
    """Meta-training produced non-finite values and stopped; the last good checkpoint is kept."""
