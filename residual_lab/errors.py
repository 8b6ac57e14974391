"""Errors meant for the person at the keyboard, not for a traceback."""


class UserFacingError(Exception):
    """A problem with the user's input or environment, explained in the message.

    ``residual_lab.run`` prints the message and exits non-zero without a traceback
    (set ``HYDRA_FULL_ERROR=1`` to see one).
    """


class DataUnavailableError(UserFacingError):
    """The requested data is not on disk and cannot be fetched."""
