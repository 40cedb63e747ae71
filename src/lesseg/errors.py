"""Errors that reach a user as one clear line (the CLI prints them and exits 2)."""


class LessegError(Exception):
    """Base class of every error caused by bad input rather than by a bug."""


class DataError(LessegError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message names it."""


class ConfigError(LessegError, ValueError):
    """An option has a value that is not valid; the message lists what would be."""


def did_you_mean(word: str, options) -> str:
    """' (did you mean X?)' for the nearest option, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
