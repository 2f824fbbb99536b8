"""Exceptions shared by the library and the command line."""

from __future__ import annotations


class ParameterError(ValueError):
    """A parameter is outside its allowed range.

    ``param`` is the Python keyword name (``sigma_w2``); the CLI turns it into the option name
    (``--sigma-w2``) so that the one-line message always names what the user typed.
    """

    def __init__(self, param: str, message: str):
        self.param = param
        self.detail = message
        super().__init__(f"{param}: {message}")
