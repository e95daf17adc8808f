import numpy as np

from workflow.verify_ir import match


def counts(paired, only_mxnet, only_ir):
    return paired, len(only_mxnet), len(only_ir)


def rows(*values):
    return np.array(values, dtype=np.float32).reshape(-1, 6)


def test_match_pairs_same_label_and_overlapping_boxes():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9], [1, 0.1, 0, 0, 0.2, 0.2])
    ir = rows([0, 0.9, 0.1, 0.1, 0.5, 0.502], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    assert counts(*match(mxnet, ir, 0.5)) == (2, 0, 0)


def test_match_counts_other_labels_moved_boxes_and_extras():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    ir = rows([1, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.5, 0.5, 0.9, 0.9], [0, 0.7, 0, 0, 0.1, 0.1])
    assert counts(*match(mxnet, ir, 0.5)) == (0, 2, 3)


def test_scores_rounded_across_the_threshold_are_not_differences():
    mxnet = rows([0, 0.501, 0.1, 0.1, 0.5, 0.5])
    ir = rows([0, 0.4995, 0.1, 0.1, 0.5, 0.5])
    assert counts(*match(mxnet, ir, 0.5)) == (1, 0, 0)


def test_boxes_clipped_to_zero_area_pair_by_their_corners():
    mxnet = rows([3, 0.694, 0, 0.654, 0, 0.82], [3, 0.6, 0, 0.2, 0, 0.3])
    ir = rows([3, 0.692, 0, 0.655, 0, 0.82], [3, 0.6, 0, 0.25, 0, 0.3])
    paired, only_mxnet, only_ir = match(mxnet, ir, 0.5)
    assert paired == 1
    np.testing.assert_array_equal(only_mxnet, rows([3, 0.6, 0, 0.2, 0, 0.3]))
    np.testing.assert_array_equal(only_ir, rows([3, 0.6, 0, 0.25, 0, 0.3]))
