"""Train the sparse autoencoder once on MNIST, tracked in MLflow.

    python experiments/train.py                      # the README baseline, 10 epochs
    python experiments/train.py --beta 0.005 --epochs 3
    python experiments/train.py --train-size 5000 --epochs 1 --no-track

Every config field is a flag; see --help. The data are fetched and verified on first use.
"""

from sae.commands import train

if __name__ == "__main__":
    train.run()
