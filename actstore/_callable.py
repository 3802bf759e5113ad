"""Let a subpackage double as the function it is named after (``actstore.extract(...)``).

Python binds a package's name over a same-named function in the parent once the package is
imported, so ``actstore.extract`` and ``actstore.interpret`` are made callable modules instead.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Calling the module ``module_name`` calls ``func``."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    _CallableModule.__call__.__doc__ = func.__doc__
    sys.modules[module_name].__class__ = _CallableModule
