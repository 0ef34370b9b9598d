"""The commands, one module each: ``sae-<name>``, ``python -m sae <name>`` and the scripts in
experiments/ and analysis/ all call the module's ``main`` through ``sae.cli.run_main``."""

COMMANDS = (
    "train",
    "baseline",
    "sweep",
    "report",
    "ui",
    "server",
    "bench",
    "demo",
    "repair-journal",
)
"""Command names as typed; the module of ``repair-journal`` is ``repair_journal``."""
