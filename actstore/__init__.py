"""actstore: chunked activation stores, coresets and out-of-core interpretation of image classifiers.

Heavy modules (torch, zarr, dask) load on first use of the name that needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "extract": "actstore.extract",  # a callable package: actstore.extract(...) runs an extraction
    "ExtractResult": "actstore.extract.extractor",
    "load_model": "actstore.extract.models",
    "list_models": "actstore.extract.models",
    "layer_names": "actstore.extract.models",
    "resolve_dataset": "actstore.extract.datasets",
    "open_store": "actstore.store.reader",
    "ActivationStore": "actstore.store.reader",
    "verify_store": "actstore.store.verify",
    "open_dataset": "actstore.store.labelled",  # xarray, after checking the store's schema version
    "open_datatree": "actstore.store.labelled",
    "select": "actstore.coresets.select",
    "select_many": "actstore.coresets.select",
    "save_coreset": "actstore.coresets.select",
    "Coreset": "actstore.coresets.artifact",
    "interpret": "actstore.interpret",  # a callable package, like extract
    "save_features": "actstore.interpret.run",
    "Features": "actstore.interpret.features",
    "ICE": "actstore.interpret.ice",
    "VEBI": "actstore.interpret.vebi",
    "model_head": "actstore.extract.heads",
    "angular_distance": "actstore.evaluate.shape",
    "ShapeStats": "actstore.evaluate.shape",
    "ExperimentConfig": "actstore.evaluate.config",
    "read_results": "actstore.evaluate.results",
    "write_synthetic_store": "actstore.extract.synthetic",
    "TopicModel": "actstore.interpret.topic",
    "get_interpreter": "actstore.interpret.base",
    "list_interpreters": "actstore.interpret.base",
    "register_model": "actstore.extract.models",
    "run_experiment": "actstore.evaluate.experiment",
    "write_report": "actstore.report.report",
    "Catalog": "actstore.catalog",
    "open_catalog": "actstore.catalog",
    "errors": "actstore.errors",
}

_MODULES = {"errors", "extract", "interpret"}  # the name is the module itself, never a function shadowing it

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = import_module(_EXPORTS[name])
        value = module if name in _MODULES else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'actstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
