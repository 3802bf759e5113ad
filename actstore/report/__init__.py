"""Table 1, figures, §4.7 heatmaps and a self-contained HTML report from an experiment's results."""

from .heatmaps import heatmap, heatmap_grid, overlay
from .report import write_report
from .tables import robustness_table

__all__ = ["robustness_table", "write_report", "heatmap", "heatmap_grid", "overlay"]
