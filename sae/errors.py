"""An exception as one line, credentials masked: one format for tags, attributes and consoles."""

from __future__ import annotations

from sae.redact import redact


def one_line(err: BaseException) -> str:
    """The exception as one line, credentials redacted: for tags, attributes and consoles."""
    text = str(err).strip().splitlines()
    return redact(f"{type(err).__name__}: {text[0] if text else ''}")[:500]
