"""Replicate the published 10-epoch baseline with beta 1e-4 (the script's) and 0.005 (the README's).

    python experiments/baseline.py                 # 2 betas x 3 seeds x 10 epochs, all tracked
    python experiments/baseline.py --seeds 5       # the table in docs/baseline.md (make baseline)
    python experiments/baseline.py --seeds 1 --epochs 1 --train-size 6000   # a quick look

Every run is tagged `baseline` in MLflow. Prints the README's two figures beside ours (mean ± sd
over seeds) under the README's definitions and under the correct ones. Any training flag applies.
"""

from sae.commands import baseline

if __name__ == "__main__":
    baseline.run()
