"""Where a command may write or delete: only inside what it owns, never through a symbolic link,
and a name a user gives that becomes a folder is one plain name, never a path."""

from __future__ import annotations

import re
from pathlib import Path

PLAIN_NAME = re.compile(r"\w[\w.-]{0,99}")
"""A name that becomes one folder: up to 100 letters, digits, '_', '-' and '.', never first, so
never a path, never hidden, never '..'."""


class PathError(ValueError):
    """A write or delete that would leave what the command owns; the message is one line."""


def check_plain_name(name: object, what: str) -> str:
    """``name`` when it is a PLAIN_NAME; else ValueError in one line, ``what`` naming the name
    (``"experiment name"``)."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a plain folder name: use up to 100 letters, digits, "
            "'_', '-' and '.' (not first), with no path separator"
        )
    return name


def owned(root: str | Path, *parts: str | Path) -> Path:
    """``root / parts`` when a command that owns ``root`` may write or delete there: the parts
    are relative and hold no '..', and neither ``root`` nor anything on the way from it to the
    target, the target included, is a symbolic link. Raises PathError, in one line, otherwise.

    What lies above ``root`` is the user's business; ``root`` itself (a report's output folder,
    the demo's folder, an output file named on the command line) must be the real thing, since a
    link planted there would send the command's writes and deletes elsewhere.
    """
    root = Path(root)
    relative = Path(*parts)
    if relative.is_absolute() or ".." in relative.parts:
        raise PathError(f"{root / relative} is not inside {root}: nothing is written there")
    path = root
    for part in ("", *relative.parts):
        path = path / part
        if path.is_symlink():
            raise PathError(
                f"{path} is a symbolic link: nothing is written or deleted through one; "
                "remove the link or choose another path"
            )
    return path
