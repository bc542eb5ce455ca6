"""Refusals: the one exception a flow raises when a step may not be taken now, with its Chinese reason."""
from __future__ import annotations

# The code of a refusal that means "no such thing (for you)": the web boundary answers 404.
NOT_FOUND = frozenset({"not_found"})


class Refused(Exception):
    """A step that may not be taken now; `message` says why in Chinese, `code` for the UI."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
