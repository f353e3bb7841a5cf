"""User-facing errors.

Every error a user can cause (bad input, missing data, foreign checkpoint, ...)
is a ``RobustmixError`` whose message is one line naming the problem and the
fix. The CLI prints it as ``robustmix: error: <message>`` and exits with 2;
anything else is a bug and keeps its traceback.
"""


class RobustmixError(Exception):
    """A problem with the user's input or environment, with a one-line fix."""


class ConfigError(RobustmixError):
    """A recipe, spec or CLI value that is unknown, mistyped or out of range."""


class DataError(RobustmixError):
    """A data set that is unknown, missing or does not fit the model."""


class CheckpointError(RobustmixError):
    """A checkpoint that is corrupt, tampered with, foreign or incompatible."""


class StoreError(RobustmixError):
    """A result store that cannot be written or was written by another version."""
