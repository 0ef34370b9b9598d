"""Credentials kept out of everything the suite writes down or shows: tags, params, artifacts,
reports, console lines and child processes' argv.

A URL's password (``scheme://user:secret@host``) and ``password=`` (or ``token=``, ``api_key=``,
``sig=`` ...) query or keyword values become ``***``; the user name and the rest of the URL stay,
so a reader can still tell which store it is.
The working URL is kept only in memory and handed to child processes through their environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

# scheme://user:password@  (the password runs to the last "@" before the host part)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)(?P<secret>[^/\s]*)@")
# password=...  in a query string or a libpq keyword/value connection string, and the tokens,
# keys and signatures of query strings (token=, access_token=, api_key=, X-Amz-Signature=, sig=)
_KEYWORD = re.compile(
    r"(?P<head>\b(?:[\w-]*(?:password|passwd|pwd|token|secret|signature|api[_-]?key)|sig)=)"
    r"(?P<secret>[^&\s;]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _KEYWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def has_secret(text: str) -> bool:
    """True when ``redact`` would change ``text``."""
    return redact(text) != text


def redact_all(values: Iterable[str]) -> list[str]:
    """``redact`` of each value (an argv, a list of lines)."""
    return [redact(v) for v in values]


def redact_values(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping with every string value redacted, nested mappings included."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, str):
            out[key] = redact(value)
        elif isinstance(value, Mapping):
            out[key] = redact_values(value)
        else:
            out[key] = value
    return out
