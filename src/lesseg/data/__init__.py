"""Datasets: readers for on-disk layouts, supervision splits, paired transforms, synthetic scenes, checks."""

from lesseg.data.classes import ClassInfo
from lesseg.data.source import DatasetSource, LabelMap, Record, read_dataset

__all__ = ["ClassInfo", "DatasetSource", "LabelMap", "Record", "read_dataset"]
