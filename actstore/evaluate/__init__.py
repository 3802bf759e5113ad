"""Evaluation: the streamed shape metric Φ, interpretation maps and accuracy per class, VEBI's forward
hooks, and the experiment runner. The shape metric loads light; the rest (torch) on first use."""

from importlib import import_module
from typing import Any

from .shape import EvaluationError, ShapeStats, angular_distance

_LAZY = {
    "ExperimentConfig": "experiment", "run_experiment": "experiment",
    "class_accuracy": "protocol", "class_phi": "protocol", "interpretation_maps": "protocol",
    "unit_maps": "protocol", "vebi_units_by_layer": "protocol",
    "hooked_accuracy": "hooks", "hooked_maps": "hooks", "store_images": "hooks",
}

__all__ = ["EvaluationError", "ShapeStats", "angular_distance", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
