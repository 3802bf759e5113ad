"""Tables, figures and a self-contained HTML report from an experiment's results."""

from .report import robustness_table, write_report

__all__ = ["robustness_table", "write_report"]
