"""Exceptions and warnings raised by hyperunmix.

Every error a user can provoke with bad input derives from :class:`HyperunmixError`, so the
CLI can print its message as one line instead of a traceback.
"""


class HyperunmixError(Exception):
    """Base class of every error hyperunmix raises on purpose."""


class InputError(HyperunmixError, ValueError):
    """Input arrays or parameters are invalid (wrong rank, shapes, dtype, values)."""


class FileFormatError(HyperunmixError):
    """A file cannot be read: unknown format, corrupt, truncated, or missing keys."""


class DataNotFoundError(HyperunmixError, FileNotFoundError):
    """A dataset's files are not where the loader looked; the message says where to put them."""


class NotFittedError(HyperunmixError, RuntimeError):
    """An estimator was asked to unmix before ``fit``."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance."""


class ScalingWarning(UserWarning):
    """The data look mis-scaled (integer digital numbers, many negative values)."""
