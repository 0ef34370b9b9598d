"""Which sparse code is best at every sparsity, and which sampler finds the front fastest.

    python experiments/frontiers.py                           # l1, kl, topk: 3 seeds, small
    python experiments/frontiers.py --setting full --seeds 0  # the full default, one seed
    python experiments/frontiers.py --compare samplers        # tpe, random, nsga2, gp on l1

Runs (or resumes) one study per family (or sampler) and seed, each with the same budget,
settings and sampler, named bench-SETTING-FAMILY-SAMPLER-sSEED in the Optuna storage (with
-PRUNER after it, and in the files' names, when --pruner is given); then writes
OUT/COMPARE-SETTING.md (the table, the reference point, Welch's verdicts over the seeds,
the studies and their MLflow parent runs), .tables.md (the same without heading or figure,
for a page to include), .png (the fronts) and .json (every figure).
Sweep flags (--trials, --workers, --threads, --storage, ...) apply to every study.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from sae import tracking
from sae.bench import frontiers as F
from sae.cli import ArgumentParser, add_config_arguments, config_from_args, run_main
from sae.paths import owned
from sae.sweep import SweepConfig
from sae.sweep.study import make_storage


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--setting", choices=sorted(F.SETTINGS), default="small")
    parser.add_argument("--compare", choices=("families", "samplers"), default="families")
    parser.add_argument("--families", nargs="+", default=None, help="default: l1 kl topk")
    parser.add_argument("--samplers", nargs="+", default=None, help="default: tpe random nsga2 gp")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="reports/frontiers", help="folder of the outputs")
    parser.add_argument("--only-read", action="store_true", help="run nothing: read the studies")
    parser.add_dataclass("sweep", SweepConfig())
    add_config_arguments(parser)
    args = parser.parse_args()
    families = args.families or (list(F.FAMILIES) if args.compare == "families" else ["l1"])
    samplers = args.samplers or (
        [args.sweep.sampler] if args.compare == "families" else list(F.SAMPLERS)
    )
    for what, names, known in (("family", families, F.FAMILIES), ("sampler", samplers, F.SAMPLERS)):
        for name in names:
            if name not in known:
                raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(known)}")
    base = config_from_args(args)
    base = dataclasses.replace(base, tracking=dataclasses.replace(base.tracking, run_name=None))
    out = Path(args.out)
    pruner = args.sweep.pruner
    stem = f"{args.compare}-{args.setting}" + ("" if pruner == "auto" else f"-{pruner}")
    files = {ext: owned(out, f"{stem}.{ext}") for ext in ("md", "tables.md", "png", "json")}
    if not args.only_read:
        F.run_grid(base, args.sweep, args.setting, families, samplers, args.seeds)
    settings = tracking.load_settings(base.tracking.config_file, base.tracking.tracking_uri)
    storage = make_storage(args.sweep.storage or settings.optuna_storage)
    records = F.read_grid(storage, args.setting, families, samplers, args.seeds, pruner)
    by = "family" if args.compare == "families" else "sampler"
    command = shlex.join(["python", "experiments/frontiers.py", *sys.argv[1:]])
    text = F.document(records, by, args.setting, command, files["png"].name)
    out.mkdir(parents=True, exist_ok=True)  # once there is something to write
    F.plot_fronts(records, by, files["png"], f"fronts by {by}, {args.setting} setting")
    files["md"].write_text(text)
    files["tables.md"].write_text(F.document(records, by, args.setting, command, None))
    files["json"].write_text(
        json.dumps({"command": command, "studies": [dataclasses.asdict(r) for r in records]})
    )
    print(text)
    print(f"wrote {', '.join(map(str, files.values()))}")


def run() -> NoReturn:
    run_main(main)
