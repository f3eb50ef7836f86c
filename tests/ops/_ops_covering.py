"""Covering sets of choice combinations for the ops tests (deterministic).

* ``pairwise_structural()``: every pair of values of the structural choices
  threshold x parts x rescale x bam_depth x skip appears in at least one combination
  (greedy all-pairs construction), the other choices drawn at random.
* ``each_value()``: every value of every choice at least once, the others random.
"""
import itertools
import random

from ops.choices import CHOICES

STRUCTURAL = ("threshold", "parts", "rescale", "bam_depth", "skip")


def _random_choices(rng):
    return {name: rng.choice(values) for name, (_, values) in CHOICES.items()}


def pairwise_structural(seed=0):
    rng = random.Random(seed)
    names = STRUCTURAL
    uncovered = set()
    for a, b in itertools.combinations(range(len(names)), 2):
        for va in CHOICES[names[a]][1]:
            for vb in CHOICES[names[b]][1]:
                uncovered.add((a, va, b, vb))
    combos = []
    while uncovered:
        best, best_gain = None, -1
        for _ in range(60):  # random candidates, keep the one covering most new pairs
            cand = [rng.choice(CHOICES[n][1]) for n in names]
            # force one uncovered pair in so every round makes progress
            a, va, b, vb = sorted(uncovered, key=repr)[rng.randrange(len(uncovered))]
            cand[a], cand[b] = va, vb
            gain = sum(
                (i, cand[i], j, cand[j]) in uncovered for i, j in itertools.combinations(range(len(names)), 2)
            )
            if gain > best_gain:
                best, best_gain = cand, gain
        for i, j in itertools.combinations(range(len(names)), 2):
            uncovered.discard((i, best[i], j, best[j]))
        combo = _random_choices(rng)
        combo.update(dict(zip(names, best)))
        combos.append(combo)
    return combos


def each_value(seed=1):
    rng = random.Random(seed)
    combos = []
    for name, (_, values) in CHOICES.items():
        for v in values:
            combo = _random_choices(rng)
            combo[name] = v
            combos.append(combo)
    return combos


def label(combo):
    return ",".join(f"{k}={v}" for k, v in combo.items() if v != CHOICES[k][0]) or "neutral"
