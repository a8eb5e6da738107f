"""One matplotlib figure per experiment, drawn from its stored result only (Agg, no pyplot).

``figure(name, result)`` returns a Figure drawn by the experiment's own ``plot``;
``png_bytes`` renders it without a timestamp or version in the metadata, so the same stored
result always gives the same bytes.
"""

from __future__ import annotations

import io
from typing import Any

from dropkit.lab._deps import need

__all__ = ["BLUE", "GREEN", "GREY", "ORANGE", "RED", "figure", "png_bytes"]

# The lab's colours (each experiment's ``plot`` draws with them).
BLUE, ORANGE, GREEN, GREY, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728"


def figure(name: str, result: dict[str, Any]) -> Any:
    """The figure of experiment ``name`` from its stored ``result``; the verdict in the title."""
    mfig = need("matplotlib.figure")
    width = 15.0 if name == "ensemble" else 11.0
    fig = mfig.Figure(figsize=(width, 4.2), dpi=100, layout="constrained")
    from dropkit.lab.experiments import REGISTRY  # (the experiments import the colours)

    REGISTRY[name].plot(fig, result)
    verdict = "HOLDS" if result["holds"] else "DOES NOT HOLD"
    fig.suptitle(f"{name}: {verdict}", fontsize=12,
                 color=GREEN if result["holds"] else RED)
    return fig


def png_bytes(fig: Any) -> bytes:
    """PNG of ``fig`` (Agg), with no software version or date in the metadata."""
    need("matplotlib.backends.backend_agg").FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
