"""Search beta, lr and batch size with Optuna; every trial is a tracked MLflow run.

    python experiments/sweep.py --trials 30                     # the main job: Pareto front
    python experiments/sweep.py --trials 30 --workers 2         # two processes share the study
    python experiments/sweep.py --objective constrained --max-active-frac 0.25
    python experiments/sweep.py --trials 12 --epochs 2 --train-size 10000   # a quick look

Rerunning the same command resumes the study: --trials counts finished trials in total.
Training flags (--epochs, --train-size, ...) apply to every trial; see --help.
"""

from sae.commands import sweep

if __name__ == "__main__":
    sweep.run()
