"""Declared hyperparameters: scikit-learn's constraint objects, checked once, with the coercion that
text input (``--param k=5``, YAML configs) needs.

Interpreters declare ``_parameter_constraints`` as scikit-learn estimators do (``Interval``,
``StrOptions``, types); the store-level options of an interpreter or selector are declared the same
way. :func:`check_params` coerces text to the declared number type, then validates, so a wrong
value is one :class:`~actstore.errors.ParameterError` before any work starts.
"""

from __future__ import annotations

import numbers
from typing import Any

from .errors import ParameterError

__all__ = ["check_params", "validate", "Interval", "StrOptions", "Integral", "Real"]

from numbers import Integral, Real  # noqa: E402 - re-exported for declarations

from sklearn.utils._param_validation import (  # noqa: E402 - the estimator contract's own machinery
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)


def _wants(constraints: list[Any], kind: type) -> bool:
    return any(c is kind or (isinstance(c, Interval) and c.type is kind) or c == kind.__name__ for c in constraints)


def _coerce(value: Any, constraints: list[Any]) -> Any:
    """Text that spells a number becomes that number when the parameter takes numbers."""
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if _wants(constraints, Integral):
            try:
                return int(text)
            except ValueError:
                pass
        if _wants(constraints, Real) or _wants(constraints, Integral):
            try:
                number = float(text)
            except ValueError:
                return value
            return int(number) if _wants(constraints, Integral) and number.is_integer() else number
    if isinstance(value, float) and value.is_integer() and _wants(constraints, Integral) \
            and not _wants(constraints, Real):
        return int(value)
    return value


def validate(constraints: dict[str, list[Any]], params: dict[str, Any], who: str) -> None:
    """Raise :class:`ParameterError` unless every parameter meets its declared constraints."""
    try:
        validate_parameter_constraints(constraints, params, caller_name=who)
    except InvalidParameterError as exc:
        raise ParameterError(f"{exc}".replace("\n", " ")) from None


def check_params(constraints: dict[str, list[Any]], params: dict[str, Any], who: str) -> dict[str, Any]:
    """``params`` coerced to their declared types and validated; unknown names are an error."""
    unknown = sorted(set(params) - set(constraints))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown} for {who}; allowed: {', '.join(sorted(constraints))}")
    out = {k: _coerce(v, constraints[k]) for k, v in params.items()}
    for k, v in out.items():
        if isinstance(v, bool) and not any(c is bool or c == "boolean" for c in constraints[k]) \
                and _wants(constraints[k], Integral):
            raise ParameterError(f"The '{k}' parameter of {who} must be a number, got {v!r}")
    validate({k: constraints[k] for k in out}, out, who)
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)
