"""matplotlib figures drawn off-screen (Agg) and returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["subplots", "to_png"]


def subplots(*args: Any, **kwargs: Any) -> Any:
    """``plt.subplots`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def to_png(fig: Any, dpi: int) -> bytes:
    """The figure as PNG bytes, laid out tightly; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
