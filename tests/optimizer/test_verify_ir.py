import numpy as np

from workflow.verify_ir import match


def rows(*values):
    return np.array(values, dtype=np.float32).reshape(-1, 6)


def test_match_pairs_same_label_and_overlapping_boxes():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9], [1, 0.1, 0, 0, 0.2, 0.2])
    ir = rows([0, 0.9, 0.1, 0.1, 0.5, 0.502], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    assert match(mxnet, ir, 0.5) == (2, 0, 0)


def test_match_counts_other_labels_moved_boxes_and_extras():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    ir = rows([1, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.5, 0.5, 0.9, 0.9], [0, 0.7, 0, 0, 0.1, 0.1])
    assert match(mxnet, ir, 0.5) == (0, 2, 3)


def test_scores_rounded_across_the_threshold_are_not_differences():
    mxnet = rows([0, 0.501, 0.1, 0.1, 0.5, 0.5])
    ir = rows([0, 0.4995, 0.1, 0.1, 0.5, 0.5])
    assert match(mxnet, ir, 0.5) == (1, 0, 0)
