"""The paper's evaluation (§3.3, §4.1-4.3) for any registered interpreter, one class at a time.

The interpreter gives its interpretation maps Z per layer and the (Z, Z') pairs to compare
(:class:`~actstore.interpret.base.Interpreter`); Φ is netrep's angular shape metric on each pair,
averaged over the pairs (VEBI: the layers where R and R' both found units). The averaging rule,
here and in Table 1: a mean is over the values that are defined (finite), and every mean is
reported with how many were defined out of how many there were; a mean over none is NaN.
The accuracy is the head's top-1 on what the interpreter makes of the class's validation maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EvaluationError
from ..interpret.base import ClassData, EvalContext, Interpreter, get_interpreter
from ..interpret.features import Features
from ..store.reader import ActivationStore
from .shape import ShapeStats

__all__ = ["phi_of_pairs", "class_phi", "class_accuracy", "defined_mean"]

Pairs = list[tuple[np.ndarray, np.ndarray]]


def defined_mean(values: list[float]) -> tuple[float, int]:
    """(mean of the finite values, how many there were): the one averaging rule of the evaluation."""
    finite = [v for v in values if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), len(finite)


def phi_of_pairs(pairs: Pairs, alphas: list[float]) -> tuple[dict[float, float], int]:
    """Φ per α averaged over the pairs where it is defined, and how many pairs entered the mean."""
    per_pair = []
    for Z, Z2 in pairs:
        stats = ShapeStats().update(Z, Z2)
        values = {}
        for a in alphas:
            try:
                values[a] = stats.distance(a)
            except EvaluationError:  # a map without variance: the angle is undefined
                values[a] = float("nan")
        per_pair.append(values)
    out = {a: defined_mean([p[a] for p in per_pair])[0] for a in alphas}
    defined = sum(1 for p in per_pair if all(np.isfinite(v) for v in p.values()))
    return out, defined


def _context(store: ActivationStore, layer: str | None) -> EvalContext:
    """An evaluation context on ``store`` alone: stored maps only, no model run over images."""
    name = layer or store.layers[-1]
    return EvalContext(val=store, loaded=None, head=None, layer=name, unit_layer=name, dataset=lambda: None,
                       all_layers=False)


def class_phi(full: Features, sub: Features, store: ActivationStore, c: int, alphas: list[float],
              layer: str | None = None) -> dict[str, Any]:
    """Φ(Z, Z') of class ``c`` on ``store`` (validation data, holding the layers the features need) per α,
    and how many layers entered it."""
    if full.method != sub.method:
        raise EvaluationError(f"cannot compare {full.method} with {sub.method}")
    interp = get_interpreter(full.method)
    data = interp.class_data(_context(store, layer or full.layer), c, [full, sub])
    pairs = interp.pairs(interp.interpretation(full, data), interp.interpretation(sub, data))
    phi, layers = phi_of_pairs(pairs, alphas)
    return {"phi": phi, "layers": layers}


def class_accuracy(interp: Interpreter, features: Features, data: ClassData, ctx: EvalContext,
                   z: dict[str, np.ndarray]) -> float:
    """Top-1 accuracy on class ``data.c``'s validation rows of the head on the interpreter's input (paper §4.2)."""
    logits = ctx.head.logits(interp.head_input(features, data, z, ctx))
    return float((logits.argmax(1) == data.c).mean()) if len(logits) else float("nan")
