"""Evaluation: the streamed shape metric Φ."""

from .shape import EvaluationError, ShapeStats, angular_distance

__all__ = ["EvaluationError", "ShapeStats", "angular_distance"]
