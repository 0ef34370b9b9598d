"""The command line: the argument parser every command uses (simple-parsing over the config
dataclasses) and the one error policy (one line on stderr; exit 2, 1, 130 or 143)."""

from sae.cli.errors import fail, run_main
from sae.cli.options import SettingsOptions
from sae.cli.parser import (
    ArgumentParser,
    SecretOnCommandLine,
    UsageError,
    finite_float,
    repeatable,
)
from sae.cli.training import add_config_arguments, config_from_args, read_config_file

__all__ = [
    "ArgumentParser",
    "SecretOnCommandLine",
    "SettingsOptions",
    "UsageError",
    "add_config_arguments",
    "config_from_args",
    "fail",
    "finite_float",
    "read_config_file",
    "repeatable",
    "run_main",
]
