"""Typed errors. Each says what was wrong, where, and how to fix it.

The CLI prints ``str(error)`` on one line to stderr and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "ActstoreError",
    "CatalogError",
    "DatasetError",
    "ModelError",
    "LayerError",
    "WeightsError",
    "StoreError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreIncompleteError",
    "StoreCorruptError",
    "StoreSchemaError",
    "OutputNotWritableError",
    "SelectionError",
    "InterpretError",
    "ParameterError",
    "InputTypeError",
    "NotFittedError",
    "EvaluationError",
    "ConfigError",
    "ResultsError",
    "DiskFullError",
    "NotOursError",
    "UnsafeNameError",
    "NonFiniteError",
    "ResultsFileError",
    "SchedulerError",
    "Interrupted",
]


class ActstoreError(Exception):
    """Base of every error actstore raises on purpose."""


class CatalogError(ActstoreError, ValueError):
    """A catalog.yaml is malformed, or names something it does not hold."""


class DatasetError(ActstoreError, ValueError):
    """A dataset spec is unknown, or the data behind it is unusable."""


class ModelError(ActstoreError, ValueError):
    """A model name is unknown, or the model cannot be built."""


class LayerError(ActstoreError, ValueError):
    """A layer name is not a node of the model."""


class WeightsError(ActstoreError, ValueError):
    """Weights are missing, corrupt, or for another architecture."""


class StoreError(ActstoreError, ValueError):
    """An activation store cannot be used as asked."""


class StoreExistsError(StoreError):
    """The output path holds a store with other provenance."""


class StoreLockedError(StoreError):
    """Another process is writing the store."""


class StoreIncompleteError(StoreError):
    """The store's extraction has not finished."""


class StoreCorruptError(StoreError):
    """Chunks are missing or unreadable, or the schema does not match."""


class StoreSchemaError(StoreError):
    """The store was written with a layout (schema version) this reader does not take: an older one, to be
    re-extracted, or a newer one, needing a newer actstore."""


class OutputNotWritableError(ActstoreError, OSError):
    """The output location cannot be written."""


class SelectionError(ActstoreError, ValueError):
    """Bad input to a coreset selector (rate, parameters, features, labels)."""


class InterpretError(ActstoreError, ValueError):
    """Bad input to an interpreter (data, labels), or a fit that cannot be made."""


class NotFittedError(InterpretError, AttributeError):
    """An estimator used before ``fit``."""


class InputTypeError(InterpretError, TypeError):
    """Data of a type an estimator cannot take (objects, strings)."""


class ParameterError(InterpretError, SelectionError, TypeError):
    """A hyperparameter of the wrong type or out of its declared range (an interpreter's or a selector's)."""


class EvaluationError(ActstoreError, ValueError):
    """Bad input to an evaluation (shapes, α, undefined angles)."""


class ConfigError(ActstoreError, ValueError):
    """An experiment config names something unknown or is malformed."""


class ResultsError(ActstoreError, ValueError):
    """A results table is missing, truncated, from another run, or from an older actstore."""


class DiskFullError(OutputNotWritableError):
    """The disk (or quota) filled up while writing; nothing half-written is left behind."""


class NotOursError(ActstoreError):
    """A path holds something actstore did not make (no recorded provenance or key): it is never deleted."""


class UnsafeNameError(ActstoreError, ValueError):
    """A name would become a file name outside the folder it belongs to (``..``, ``/``, absolute...)."""


class NonFiniteError(ActstoreError, ValueError):
    """NaN or Inf where numbers are expected: in a block being written, a store, or a fitted artifact."""


class ResultsFileError(ResultsError):
    """A results CSV is truncated or malformed."""


class SchedulerError(ActstoreError, RuntimeError):
    """A scheduler name that is not known, or a cluster that does not answer."""



class Interrupted(BaseException):
    """Ctrl-C, raised past click (which would print a blank line and turn KeyboardInterrupt into Abort)."""
