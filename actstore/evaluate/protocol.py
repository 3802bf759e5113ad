"""The paper's evaluation (§3.3, §4.1-4.3): interpretation maps Z from R, Φ(Z, Z') per class, and
accuracy through the model's head, on a validation store.

- ICE: Z = the reconstruction of the maps through the class's components; accuracy = head(Z).
- Topic: Z = the topic maps (cosine of each position with each kept topic); accuracy =
  head(g(v(A))), the completeness accuracy. Φ is invariant to the order of the topics.
- VEBI: per layer, Z = the maps of the class's identified units; R and R' are equalised in depth by
  keeping the highest-weight units; Φ is averaged over the layers where both found units and whose
  maps the validation store holds (or that forward hooks computed: ``cache``). Accuracy ("final
  layer") zeroes the class's units in the last layer's maps and runs the head; the "all layers"
  variant runs the model itself with hooks (``evaluate.hooks``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..interpret.features import Features
from ..interpret.ice import ICE
from ..store.reader import ActivationStore
from .shape import EvaluationError, ShapeStats

__all__ = ["interpretation_maps", "class_phi", "class_accuracy", "vebi_units_by_layer", "unit_maps", "UnitMaps"]


def _maps(store: ActivationStore, layer: str, c: int) -> np.ndarray:
    """Class ``c``'s maps of ``layer`` (n, H, W, D) float32."""
    return np.asarray(store.array(f"layers/{layer}/maps")[store.class_rows(c)], np.float32)


UnitMaps = dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]  # (layer, class) -> (channels, maps of those)


def unit_maps(store: ActivationStore, c: int, channels: dict[str, np.ndarray]) -> UnitMaps:
    """Class ``c``'s maps of only the given channels per layer, read from ``store`` chunk by chunk
    (the whole layer is never held: VEBI needs a few units per class)."""
    out: UnitMaps = {}
    rows = store.class_rows(c)
    for layer, ch in channels.items():
        ch = np.unique(np.asarray(ch, np.int64))
        sel = store.array(f"layers/{layer}/maps").get_orthogonal_selection((rows, slice(None), slice(None), ch))
        out[(layer, c)] = (ch, np.asarray(sel, np.float32))
    return out


def _channels_of(cache: UnitMaps, layer: str, c: int, wanted: np.ndarray) -> np.ndarray:
    ch, A = cache[(layer, c)]
    pos = np.searchsorted(ch, wanted)
    if np.any(pos >= len(ch)) or np.any(ch[np.minimum(pos, len(ch) - 1)] != wanted):
        raise EvaluationError(f"the maps of {layer} for class {c} lack channels {sorted(set(wanted) - set(ch))}")
    return A[..., pos]


def _cosine_maps(A: np.ndarray, topics: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)
    return (A / norms) @ topics


def interpretation_maps(features: Features, A: np.ndarray, c: int) -> np.ndarray:
    """Z of class ``c``'s maps ``A`` (n, H, W, D) under ``features`` (ICE or topic)."""
    if features.method == "ice":
        ice = ICE(**{k: features.params[k] for k in ("n_components", "max_iter", "tol")})
        ice.components_ = features.arrays["components"][c]
        return ice.reconstruct(A)
    if features.method == "topic":
        return _cosine_maps(A, features.arrays["topics"])
    raise EvaluationError(f"no single-layer maps for '{features.method}'; VEBI maps are per layer")


def vebi_units_by_layer(features: Features, c: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Class ``c``'s relevant units grouped by layer: {layer: (channels, weights)}, weight-sorted."""
    w = features.arrays["coef"][c]
    layers, channels = features.arrays["unit_layer"], features.arrays["unit_channel"]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in np.flatnonzero(w > 0):
        ch, wt = out.get(str(layers[i]), (np.empty(0, np.int64), np.empty(0)))
        out[str(layers[i])] = (np.append(ch, channels[i]), np.append(wt, w[i]))
    return {k: (ch[np.argsort(-wt, kind="stable")], np.sort(wt)[::-1]) for k, (ch, wt) in out.items()}


def class_phi(full: Features, sub: Features, store: ActivationStore, c: int, alphas: list[float],
              layer: str | None = None, z_full: np.ndarray | None = None, z_sub: np.ndarray | None = None,
              cache: UnitMaps | None = None) -> dict[str, Any]:
    """Φ(Z, Z') of class ``c`` on ``store`` (validation data) for each α; VEBI: mean over layers.
    ``z_full``/``z_sub``: maps already computed (ICE, topic), to avoid computing them again.
    ``cache``: VEBI's unit maps (:func:`unit_maps`, or forward hooks for layers the store lacks);
    read from the store when not given."""
    if full.method != sub.method:
        raise EvaluationError(f"cannot compare {full.method} with {sub.method}")
    if full.method in ("ice", "topic"):
        if z_full is None or z_sub is None:
            A = _maps(store, layer or full.layer or store.layers[-1], c)
            z_full = interpretation_maps(full, A, c) if z_full is None else z_full
            z_sub = interpretation_maps(sub, A, c) if z_sub is None else z_sub
        return {"phi": _safe(ShapeStats().update(z_full, z_sub), alphas), "layers": 1}
    units_full, units_sub = vebi_units_by_layer(full, c), vebi_units_by_layer(sub, c)
    cache = {} if cache is None else cache
    held = set(store.layers) | {name for name, cc in cache if cc == c}  # the store, or hooked maps
    shared = [name for name in units_full if name in units_sub and name in held]
    per_layer = []
    for name in shared:
        m = min(len(units_full[name][0]), len(units_sub[name][0]))  # depth equalised (paper §4.3)
        a, b = units_full[name][0][:m], units_sub[name][0][:m]
        if (name, c) not in cache:
            cache.update(unit_maps(store, c, {name: np.union1d(a, b)}))
        stats = ShapeStats().update(_channels_of(cache, name, c, a), _channels_of(cache, name, c, b))
        per_layer.append(_safe(stats, alphas))
    phi = {a: float(np.nanmean([p[a] for p in per_layer])) if per_layer else float("nan") for a in alphas}
    return {"phi": phi, "layers": len(per_layer)}


def _safe(stats: ShapeStats, alphas: list[float]) -> dict[float, float]:
    """Φ per α; an undefined angle (a map without variance) is recorded as NaN, explicitly."""
    out = {}
    for a in alphas:
        try:
            out[a] = stats.distance(a)
        except EvaluationError:
            out[a] = float("nan")
    return out


@torch.inference_mode()
def class_accuracy(features: Features, store: ActivationStore, c: int, head: Any, layer: str | None = None,
                   A: np.ndarray | None = None, z: np.ndarray | None = None, unit_layer: str | None = None) -> float:
    """Top-1 accuracy on class ``c``'s validation rows after the interpretation (paper §4.2).
    ``A``: the class's maps when already read; ``z``: ICE's Z when already computed; ``unit_layer``:
    VEBI's name for the ReLU call that ``layer`` is (``layer3`` is the call ``layer3.1.relu_1``)."""
    layer = layer or features.layer or store.layers[-1]
    A = _maps(store, layer, c) if A is None else A
    if features.method == "ice":
        Z = interpretation_maps(features, A, c) if z is None else z
    elif features.method == "topic":
        topics, w1, w2 = (features.arrays[k] for k in ("topics", "w1", "w2"))
        f = torch.as_tensor(A)
        c_hat = torch.as_tensor(topics)
        s = f @ c_hat
        s_n = (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)) @ c_hat
        v0 = s * (s_n > float(features.params["threshold"]))
        v = v0 / (v0.sum(dim=-1, keepdim=True) + 1e-3)
        Z = (torch.relu(v @ torch.as_tensor(w1)) @ torch.as_tensor(w2)).numpy()
    elif features.method == "vebi":
        Z = A.copy()
        units = vebi_units_by_layer(features, c).get(unit_layer or layer)
        if units is not None:
            Z[..., units[0]] = 0.0  # the "final layer" ablation: the class's units switched off
    else:
        raise EvaluationError(f"no accuracy protocol for '{features.method}'")
    logits = head.logits(Z)
    return float((logits.argmax(1) == c).mean()) if len(logits) else float("nan")
