"""The training config on the command line: ``--config FILE`` (a saved config, YAML or JSON, by
section), then one flag per field of every section, the flags winning over the file."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from sae.cli.parser import ArgumentParser
from sae.config import Config, read_yaml_mapping

SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


def read_config_file(path: str) -> dict[str, Any]:
    return read_yaml_mapping(path, "config", "sections")


def config_file_sections(path: str, defaults: Config) -> dict[str, Any]:
    """``defaults`` overridden by the file at ``path``, as ``{section: dataclass}``. ValueError
    naming the file, section or field on bad input (values as YAML typed them are checked by the
    dataclasses)."""
    base = defaults.to_dict()
    for section, values in read_config_file(path).items():
        if section not in base:
            raise ValueError(f"{path}: unknown config section {section!r}")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: section {section!r} must map fields to values")
        base[section].update(values)
    cfg = Config.from_dict(base)
    return {section: getattr(cfg, section) for section in SECTIONS}


def add_config_arguments(parser: ArgumentParser, defaults: Config | None = None) -> None:
    """``--config FILE`` and one flag per training-config field, grouped by section."""
    defaults = defaults or Config()
    parser.add_argument("--config", metavar="FILE", help="load a saved config (YAML or JSON)")
    parser.read_defaults_from("--config", lambda path: config_file_sections(path, defaults))
    for section in SECTIONS:
        parser.add_dataclass(section, getattr(defaults, section))


def config_from_args(args: argparse.Namespace) -> Config:
    """The training config a parser built with ``add_config_arguments`` parsed."""
    return Config(**{section: getattr(args, section) for section in SECTIONS})
