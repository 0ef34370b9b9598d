"""Errors as one line, credentials masked: one format for tags, attributes and consoles."""

from __future__ import annotations

from sae.redact import redact


def first_line(message: object) -> str:
    """The first line of ``message``, credentials masked: the message may come from a library
    that quotes a URL as it was given."""
    lines = redact(str(message)).strip().splitlines()
    return lines[0] if lines else ""


def one_line(err: BaseException) -> str:
    """The exception as one line, its type first, credentials masked (at most 500 characters)."""
    return f"{type(err).__name__}: {first_line(err)}"[:500]


def reason(err: BaseException, *, whole: bool = False, limit: int = 200) -> str:
    """Why ``err`` happened, for a one-line message naming what failed: its first line (or, with
    ``whole``, all its lines) with white space folded, credentials masked, at most ``limit``
    characters; its type's name when it says nothing."""
    text = redact(str(err)) if whole else first_line(err)
    return " ".join(text.split())[:limit] or type(err).__name__
