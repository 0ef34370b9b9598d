"""Run one of the project's commands: python -m sae COMMAND [flags] is sae-COMMAND [flags]."""

import argparse
import importlib
import sys

from sae.cli import ArgumentParser, run_main
from sae.commands import COMMANDS


def main() -> None:
    parser = ArgumentParser(prog="python -m sae", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=COMMANDS, help="see `python -m sae COMMAND --help`")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="the command's flags")
    args = parser.parse_args()
    # The command reads sys.argv as if started as sae-<command> (its usage line, its runs' tag).
    sys.argv = [f"sae-{args.command}", *args.flags]
    importlib.import_module(f"sae.commands.{args.command.replace('-', '_')}").run()


if __name__ == "__main__":
    run_main(main)
