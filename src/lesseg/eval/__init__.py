"""Evaluation: confusion matrix, mIoU, cluster matching, the run's metrics.json."""

from lesseg.eval.confusion import ConfusionMatrix, SegMetrics, metrics_from_matrix
from lesseg.eval.coverage import ObjectCoverage
from lesseg.eval.matching import ClusterMatch, hungarian_match, majority_match
from lesseg.eval.metrics_file import format_headline, headline, read_metrics, record_metrics
from lesseg.eval.subsets import subset_miou

__all__ = [
    "ClusterMatch",
    "ConfusionMatrix",
    "ObjectCoverage",
    "SegMetrics",
    "format_headline",
    "headline",
    "hungarian_match",
    "majority_match",
    "metrics_from_matrix",
    "read_metrics",
    "record_metrics",
    "subset_miou",
]
