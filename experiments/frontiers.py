"""L1, KL and TopK fronts on one plot, and the samplers that find them: see sae.commands.frontiers.

python experiments/frontiers.py                           # l1, kl, topk: 3 seeds, small
python experiments/frontiers.py --setting full --seeds 0  # the full default, one seed
python experiments/frontiers.py --compare samplers        # tpe, random, nsga2, gp on l1
"""

from sae.commands import frontiers

if __name__ == "__main__":
    frontiers.run()
