"""The argument parser of every command: simple-parsing reads the config dataclasses, with their
attribute docstrings as help, and this module holds the project's conventions on top of it.

Each field ``name`` of a dataclass added with ``add_dataclass`` becomes the flag ``--name`` (dashes
for underscores); a float flag refuses inf and nan, an ``X | None`` flag takes the word ``none``,
a ``bool`` flag comes with its ``--no-`` form, a ``Literal`` lists its choices. A flag that names a
file of defaults (``--config FILE``, ``--space FILE``) is read before the other flags, which win.
An argument that holds a password or token (``scheme://user:secret@host``, ``?token=...``) is
refused before anything else: any local user can read a command line (``ps``).
"""

from __future__ import annotations

import argparse
import math
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import simple_parsing
from simple_parsing import ConflictResolution, DashVariant
from simple_parsing.wrappers import DataclassWrapper, FieldWrapper

from sae.errors import first_line
from sae.redact import has_secret, redact

PGPASS = "~/.pgpass (or PGPASSFILE, or PGPASSWORD)"
"""Where libpq, and so SQLAlchemy's psycopg driver under Optuna and MLflow, finds a password."""
SECRET_PLACES = {
    "--tracking-uri": (
        f"{PGPASS} for a database, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
        "MLFLOW_TRACKING_TOKEN) for a tracking server, or the whole URL in mlflow.yaml or "
        "MLFLOW_TRACKING_URI"
    ),
    "--storage": f"{PGPASS}, or the whole URL in mlflow.yaml (optuna_storage)",
    "--backend-store-uri": f"{PGPASS}, or the whole URL in MLFLOW_BACKEND_STORE_URI",
    "--auth-db": PGPASS,
}
"""Where a secret goes instead of each URL flag's value; another flag's: ``OTHER_PLACES``."""
OTHER_PLACES = f"{PGPASS}, or the environment variables its store reads"


class SecretOnCommandLine(ValueError):
    """A password or token among a command's arguments, where every local user can read it."""


def refuse_secrets(args: Sequence[str]) -> None:
    """Raise ``SecretOnCommandLine`` naming the first argument that holds a secret, its flag
    and where to put the secret instead."""
    for i, arg in enumerate(args):
        if not has_secret(arg):
            continue
        flag, value = "argument", arg
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
        elif i > 0 and args[i - 1].startswith("-"):
            flag = args[i - 1]
        place = SECRET_PLACES.get(flag, OTHER_PLACES)
        raise SecretOnCommandLine(
            f"{flag} {redact(value)} holds a password or token, which any local user can read "
            f"on the command line: drop it from the URL and put it in {place}"
        )


def finite_float(text: str) -> float:
    """argparse type of every float flag: a number, and neither inf nor nan."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _or_none(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def optional(text: str) -> Any:
        return None if text.lower() == "none" else convert(text)

    optional.__name__ = convert.__name__  # argparse names the type in "invalid int value"
    return optional


def _value_type(hint: Any) -> tuple[Callable[[str], Any], int | str | None]:
    """The argparse ``type`` and ``nargs`` of a field's annotation."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None: the word "none" means None
        (inner,) = (a for a in args if a is not type(None))
        convert, nargs = _value_type(inner)
        return _or_none(convert), nargs
    if typing.get_origin(hint) is tuple:  # tuple[float, float]: two values; tuple[int, ...]: 1+
        return _value_type(args[0])[0], "+" if args[-1] is Ellipsis else len(args)
    return (finite_float if hint is float else hint), None


def repeatable(metavar: str) -> Any:
    """A ``list[str]`` field whose flag may be given several times (``--tag A --tag B``).

    Written on one line, ``name: list[str] = repeatable("NAME")``, so that simple-parsing still
    finds the attribute docstring below it (it misses one below a multi-line definition).
    """
    return simple_parsing.field(
        default_factory=list, action="append", type=str, nargs=None, metavar=metavar
    )


class _Flag(FieldWrapper):
    """One field's flag: simple-parsing's, with the conventions of the module docstring."""

    def get_arg_options(self) -> dict[str, Any]:
        options = super().get_arg_options()
        shown = self.default
        if isinstance(shown, tuple):  # as it is typed: its own parser's commas, else spaces
            shown = ("," if "type" in self.custom_arg_options else " ").join(map(str, shown))
        text = (self.help or "").replace("%", "%%")
        common = {"dest": self.dest, "default": self.default, "required": False}
        common["help"] = f"{text} (default: {shown})"
        if self.is_bool:  # argparse's own --name / --no-name
            return {**common, "action": argparse.BooleanOptionalAction}
        if self.is_choice:
            return {**common, "type": str, "choices": options["choices"]}
        convert, nargs = _value_type(self.type)
        extra = {} if nargs is None else {"nargs": nargs}
        return {**common, "type": convert, "metavar": self.name.upper(), **extra}


class _Section(DataclassWrapper):
    """A dataclass's flags as one help section titled ``dest (the class docstring)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, field_wrapper_class=_Flag, **kwargs)

    @property
    def title(self) -> str:
        doc = (self.dataclass.__doc__ or "").strip().splitlines()
        return f"{self.name} ({doc[0]})" if doc else self.name

    @property
    def description(self) -> str | None:
        return None


class UsageError(Exception):
    """A usage error (``prog: message``) of a parser made with ``exit_on_error=False``, raised
    instead of exiting, for a ``main`` that returns its exit status."""


class ArgumentParser(simple_parsing.ArgumentParser):
    """The parser of every command: a usage error is one line (no usage block) and exit status 2.

    ``parse_args`` returns a namespace holding each added dataclass, built from its defaults, the
    file of defaults if one was named, and the flags given, in that order; a value the dataclass
    refuses raises its ValueError.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.HelpFormatter)
        super().__init__(
            *args,
            add_option_string_dash_variants=DashVariant.DASH,
            conflict_resolution=ConflictResolution.NONE,
            **kwargs,
        )
        self._default_files: list[tuple[str, Callable[[str], dict[str, Any]]]] = []

    def add_dataclass(self, dest: str, default: Any, prefix: str = "") -> None:
        """One flag per field of the dataclass instance ``default`` (``--{prefix}{field}``); the
        parsed one at ``dest``."""
        self.add_arguments(
            type(default),
            dest=dest,
            default=default,
            prefix=prefix,
            dataclass_wrapper_class=_Section,
        )

    def read_defaults_from(self, flag: str, load: Callable[[str], dict[str, Any]]) -> None:
        """The file named by ``flag`` (declared elsewhere) holds defaults that the flags override:
        ``load(path)`` returns ``{dest: dataclass instance or {field: value}}``."""
        self._default_files.append((flag, load))

    def parse_known_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
        attempt_to_reorder: bool = False,
    ) -> tuple[argparse.Namespace, list[str]]:
        args = list(sys.argv[1:] if args is None else args)
        refuse_secrets(args)
        for flag, load in self._default_files:
            # A bad flag is left to the full parse below, which reports it.
            early = argparse.ArgumentParser(add_help=False, exit_on_error=False)
            early.add_argument(flag)
            try:
                path = vars(early.parse_known_args(args)[0])[flag.lstrip("-").replace("-", "_")]
            except argparse.ArgumentError:
                path = None
            if path:
                self.set_defaults(**load(path))
        try:
            return super().parse_known_args(args, namespace, attempt_to_reorder)
        except argparse.ArgumentError as err:  # only raised with exit_on_error=False
            self.error(str(err))

    def error(self, message: str) -> NoReturn:
        if not self.exit_on_error:
            raise UsageError(f"{self.prog}: {first_line(message)}")
        self.exit(2, f"{self.prog}: error: {first_line(message)}\n")
