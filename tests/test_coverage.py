"""Object coverage (part vs. rest), by hand."""

import numpy as np
import pytest

from lesseg.eval import ObjectCoverage


def test_two_objects_by_hand():
    classes = np.array([[2, 2, 2, 2, 0, 3, 3, 3]])
    instances = np.array([[1, 1, 1, 1, 0, 2, 2, 2]])
    parts = np.array([[0, 1, 0, 0, 0, 0, 0, 2]])
    labels = np.array([[0, 2, 2, 0, 2, 3, 0, 3]])  # pixel 4 (background) labelled 2 counts for nothing
    cov = ObjectCoverage()
    cov.update(labels, instances, parts, classes)
    out = cov.result()
    # object 1: part 1/1, rest 1/3, whole 2/4; object 2: part 1/1, rest 1/2, whole 2/3
    assert out["objects"] == 2
    assert out["part"] == pytest.approx(1.0)
    assert out["rest"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert out["object"] == pytest.approx((2 / 4 + 2 / 3) / 2)


def test_object_without_part_counts_only_whole():
    cov = ObjectCoverage()
    cov.update(np.ones((2, 2), int), np.ones((2, 2), int), np.zeros((2, 2), int), np.ones((2, 2), int))
    assert cov.result() == {"objects": 1, "part": None, "rest": None, "object": 1.0}


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="HxW maps of one size"):
        ObjectCoverage().update(np.zeros((2, 2), int), np.zeros((2, 3), int), np.zeros((2, 2), int),
                                np.zeros((2, 2), int))  # fmt: skip
