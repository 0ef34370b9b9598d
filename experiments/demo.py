"""A first picture in five minutes: a short baseline, sweep and report, then the UI on them.

    python experiments/demo.py               # make demo: 10,000/2,000 images, 3 epochs, 8 trials
    python experiments/demo.py --no-ui       # stop after the report (tests, CI)
    python experiments/demo.py --trials 4 --epochs 2   # shorter still

Everything goes into demo/ (stores, logs, report; its own mlflow.yaml), deleted and made again on
every run, so the project's own stores stay as they were. The UI runs until Ctrl-C; browse the
stores again later with `python experiments/ui.py --config-file demo/mlflow.yaml --dashboard`.
"""

from sae.commands import demo

if __name__ == "__main__":
    demo.run()
