"""matplotlib figures drawn off-screen and returned as PNG bytes, without pyplot: the caller's backend
and pyplot's figure list are never touched."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["subplots", "to_png"]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, squeeze: bool = True,
             **kwargs: Any) -> tuple[Any, Any]:
    """(figure, axes) like ``plt.subplots``, on a standalone :class:`matplotlib.figure.Figure`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)


def to_png(fig: Any, dpi: int, layout: bool = True) -> bytes:
    """The figure as PNG bytes, laid out tightly (``layout=False``: the caller laid it out)."""
    buf = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
