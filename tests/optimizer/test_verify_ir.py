import numpy as np

from workflow.verify_ir import agreement, match


SIDE = 192


def counts(paired, only_mxnet, only_ir, degenerate):
    return paired, len(only_mxnet), len(only_ir)


def rows(*values):
    return np.array(values, dtype=np.float32).reshape(-1, 6)


def test_match_pairs_same_label_and_overlapping_boxes():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9], [1, 0.1, 0, 0, 0.2, 0.2])
    ir = rows([0, 0.9, 0.1, 0.1, 0.5, 0.502], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    assert counts(*match(mxnet, ir, 0.5, SIDE)) == (2, 0, 0)


def test_match_counts_other_labels_moved_boxes_and_extras():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    ir = rows([1, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.5, 0.5, 0.9, 0.9], [0, 0.7, 0, 0, 0.1, 0.1])
    assert counts(*match(mxnet, ir, 0.5, SIDE)) == (0, 2, 3)


def test_scores_rounded_across_the_threshold_are_not_differences():
    mxnet = rows([0, 0.501, 0.1, 0.1, 0.5, 0.5])
    ir = rows([0, 0.4995, 0.1, 0.1, 0.5, 0.5])
    assert counts(*match(mxnet, ir, 0.5, SIDE)) == (1, 0, 0)


def test_boxes_under_one_input_pixel_are_set_aside_and_counted():
    """Clipped to the image border, a box has no usable IoU; at bf16 its corners move by ~0.007 (issue 12)."""
    mxnet = rows([1, 0.7, 1.0, 0.0, 1.0, 0.85], [0, 0.6, 0.2, 0.2, 0.2 + 0.9 / SIDE, 0.4], [0, 0.9, 0.1, 0.1, 0.5, 0.5])
    ir = rows([1, 0.7, 1.0, 0.0, 1.0, 0.857], [0, 0.9, 0.1, 0.1, 0.5, 0.5])
    paired, only_mxnet, only_ir, degenerate = match(mxnet, ir, 0.5, SIDE)
    assert (paired, len(only_mxnet), len(only_ir), degenerate) == (1, 0, 0, (2, 1))


def test_thin_boxes_pair_by_their_corners():
    """Two pixels wide, a box shifted by 0.6 of a pixel has IoU 0.54, but its corners are within the tolerance."""
    thin = [3, 0.6, 0.3, 0.2, 0.3 + 2 / SIDE, 0.3]
    shifted = [3, 0.6, 0.3 + 0.6 / SIDE, 0.2, 0.3 + 2.6 / SIDE, 0.3]
    far = [3, 0.6, 0.3 + 2 / SIDE, 0.2, 0.3 + 4 / SIDE, 0.3]
    assert counts(*match(rows(thin), rows(shifted), 0.5, SIDE)) == (1, 0, 0)
    paired, only_mxnet, only_ir, _ = match(rows(thin), rows(far), 0.5, SIDE)
    assert paired == 0
    np.testing.assert_array_equal(only_mxnet, rows(thin))
    np.testing.assert_array_equal(only_ir, rows(far))


def test_agreement_with_nothing_to_compare_is_not_a_failure():
    """An undertrained model may score no val detection above the parity threshold: nothing disagrees."""
    assert agreement(0, 0, 0) == 1.0
    assert agreement(3, 1, 0) == 0.75
