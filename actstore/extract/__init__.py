"""Models, datasets and the extractor that fills activation stores.

``actstore.extract`` is both this package and the function :func:`extract`: Python binds a
package's name over a same-named function once the package is imported, so the module object
itself is made callable and forwards to the function.
"""

import sys
import types
from typing import Any

from .datasets import DatasetSource, resolve_dataset
from .extractor import ExtractResult, extract
from .models import LoadedModel, layer_names, list_models, load_model

__all__ = ["DatasetSource", "resolve_dataset", "ExtractResult", "extract", "LoadedModel", "layer_names",
           "list_models", "load_model"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> ExtractResult:
        return extract(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
