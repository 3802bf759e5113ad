"""Models, datasets and the extractor that fills activation stores (``actstore.extract(...)`` calls
:func:`extract`)."""

from .._callable import make_callable
from .datasets import DatasetSource, resolve_dataset
from .extractor import ExtractResult, extract
from .models import LoadedModel, layer_names, list_models, load_model

__all__ = ["DatasetSource", "resolve_dataset", "ExtractResult", "extract", "LoadedModel", "layer_names",
           "list_models", "load_model"]

make_callable(__name__, extract)
