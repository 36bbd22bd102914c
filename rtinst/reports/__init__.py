"""What a run writes for people to look at: tables, curves, per-class results, precision-recall
curves, a confusion matrix, a gallery of predictions and one HTML page per run
(``write_run_report``) or per comparison of runs (``write_comparison``)."""
from .comparison import write_comparison
from .run_report import write_run_report

__all__ = ["write_comparison", "write_run_report"]
