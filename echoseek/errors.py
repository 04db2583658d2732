"""User-facing errors.

Anything a user can cause (a bad argument, a missing or corrupt input file, an impossible
configuration) raises :class:`EchoseekError` with a message that names the file or field and
the problem. The CLI prints that message on one line and exits with status 2; everything else
is a bug and keeps its traceback.
"""


class EchoseekError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class ConfigError(EchoseekError):
    """A configuration file or ``key=value`` override is invalid."""


class InputError(EchoseekError):
    """An input file or directory is missing, unreadable or malformed."""
