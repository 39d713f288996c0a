"""User-facing errors.

Anything a user can cause (a bad name, path, shape or config value) raises :class:`GanforgeError`
with a one-line message that names the problem and the fix. The CLI prints it without a traceback;
everything else is a bug and keeps its traceback.
"""


class GanforgeError(Exception):
    """An error caused by user input; the message says what is wrong and how to fix it."""


class ConfigError(GanforgeError, ValueError):
    """A config key, value or combination is invalid."""


class DataError(GanforgeError):
    """A dataset is missing, empty, unreadable or of the wrong shape."""


class CheckpointError(GanforgeError):
    """A checkpoint or run folder is missing, corrupt, tampered with or does not match its config."""


class DivergenceError(GanforgeError):
    """Training produced NaN or Inf; the message names the step and the losses."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a whole step, and that step's checkpoint was written."""
