"""The command line, generated from the config dataclasses so ``--help`` documents every field.

Each field ``section.name`` becomes ``--name`` (underscores as dashes); ``--config FILE`` loads a
saved config (YAML or JSON, by section) whose values the flags then override.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import typing
from collections.abc import Callable
from typing import Any, Literal, NoReturn

from sae.config import Config, read_yaml_mapping
from sae.redact import redact


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def finite_float(text: str) -> float:
    """argparse type of every float flag: a number, and neither inf nor nan."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _converter(annotation: Any) -> Any:
    return finite_float if annotation is float else annotation


def _parser_for(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """(converter, extra add_argument kwargs) for a field's type."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return str, {"choices": list(args)}
    if origin is tuple:  # tuple[float, float]: two values; tuple[int, ...]: one or more
        nargs = "+" if args[-1] is Ellipsis else len(args)
        return _converter(args[0]), {"nargs": nargs}
    if type(None) in args:  # X | None: the word "none" means None
        (inner,) = (a for a in args if a is not type(None))
        convert, extra = _parser_for(inner)

        def optional(text: str) -> Any:
            return None if text.lower() == "none" else convert(text)

        optional.__name__ = convert.__name__
        return optional, extra
    return _converter(annotation), {}


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, section: str, defaults: Any, title: str | None = None
) -> None:
    """One flag ``--field-name`` (dest ``section.field_name``) per field of the dataclass."""
    cls = type(defaults)
    group = parser.add_argument_group(title or f"{section} ({cls.__doc__.strip()})")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            default = " ".join(map(str, default))
        common = {"dest": f"{section}.{f.name}", "default": argparse.SUPPRESS}
        common["help"] = f"{f.metadata['help']} (default: {default})"
        if hints[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
            continue
        convert, extra = _parser_for(hints[f.name])
        metavar = None if "choices" in extra else f.name.upper()
        group.add_argument(flag, type=convert, metavar=metavar, **extra, **common)


def add_config_arguments(parser: argparse.ArgumentParser, defaults: Config | None = None) -> None:
    """One flag per training-config field, grouped by section, help and default from the field."""
    defaults = defaults or Config()
    parser.add_argument("--config", metavar="FILE", help="load a saved config (YAML or JSON)")
    for section in dataclasses.fields(Config):
        add_dataclass_arguments(parser, section.name, getattr(defaults, section.name))


def section_values(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The flags given for ``section``, as ``{field: value}`` (tuples for multi-value flags)."""
    prefix = section + "."
    return {
        dest.removeprefix(prefix): tuple(value) if isinstance(value, list) else value
        for dest, value in vars(args).items()
        if dest.startswith(prefix)
    }


def config_from_args(args: argparse.Namespace, defaults: Config | None = None) -> Config:
    """Defaults, then ``--config FILE``, then the flags given. Raises ValueError on bad input."""
    base = (defaults or Config()).to_dict()
    if getattr(args, "config", None):
        loaded = read_config_file(args.config)
        for section, values in loaded.items():
            if section not in base:
                raise ValueError(f"{args.config}: unknown config section {section!r}")
            if not isinstance(values, dict):
                raise ValueError(f"{args.config}: section {section!r} must map fields to values")
            base[section].update(values)
    for section in base:
        base[section].update(section_values(args, section))
    # Values from the file arrive as YAML typed them; the dataclasses check each one's type.
    return Config.from_dict(base)


def read_config_file(path: str) -> dict[str, Any]:
    return read_yaml_mapping(path, "config", "sections")


def fail(message: str, code: int = 1) -> NoReturn:
    """End a command with one line on stderr, credentials masked: the message may come from a
    library that quotes a URL as it was given."""
    sys.stderr.write(f"error: {redact(message)}\n")
    raise SystemExit(code)


class _NeverRaised(Exception):
    pass


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Call an entry point's ``main``; a user mistake or a failed run ends in one line."""
    from sae.data import DataError
    from sae.train import NonFiniteLossError

    try:
        from mlflow.exceptions import MlflowException

        from sae.tracking import RunKilled
    except ModuleNotFoundError:  # an untracked command on a machine without MLflow
        MlflowException = RunKilled = _NeverRaised

    try:
        code = main() or 0
    except (ValueError, DataError, NonFiniteLossError, MlflowException) as err:
        message = str(err).strip().splitlines()
        fail(message[0] if message else type(err).__name__)
    except RunKilled:  # SIGTERM; a KeyboardInterrupt too, so it comes first
        fail("terminated; the run was marked KILLED", 143)
    except KeyboardInterrupt:
        fail("interrupted; the run was marked KILLED", 130)
    raise SystemExit(code)
