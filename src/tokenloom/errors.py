"""Errors that the library raises on bad input.

Every message says what was wrong and what is allowed. The CLI turns any of them
into one line on stderr and exit code 2; library users can catch `TokenloomError`.
"""


class TokenloomError(Exception):
    """Base class of every error tokenloom raises on purpose."""


class InvalidArgument(TokenloomError, ValueError):
    """A parameter is out of its allowed range or of the wrong kind."""


class ModelNotFound(TokenloomError, FileNotFoundError):
    """A model name or path that resolves to nothing loadable."""


class CorruptModelFile(TokenloomError):
    """A model file that exists but cannot be read (truncated, wrong format)."""
