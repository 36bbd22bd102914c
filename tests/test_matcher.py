"""rtinst.modeling.matcher: the assignment checked against hand-solved and brute-forced optima,
the ready-made costs against hand-computed values, batching, weights, forbidden pairs, errors."""
import itertools
import math

import numpy as np
import pytest
import torch

from rtinst.modeling.matcher import (
    HungarianMatcher,
    class_cost,
    dice_cost,
    focal_class_cost,
    linear_assignment,
)


def given(predictions, targets):
    """A cost that is the matrix the test put in the targets."""
    return targets["cost"]


def brute_force(cost):
    """The minimum total cost over every one-to-one assignment of min(R, C) pairs."""
    rows, cols = cost.shape
    if rows >= cols:
        return min(sum(cost[q, t] for t, q in enumerate(p))
                   for p in itertools.permutations(range(rows), cols))
    return min(sum(cost[q, t] for q, t in enumerate(p))
               for p in itertools.permutations(range(cols), rows))


def match_one(cost):
    """(queries, targets) lists of the matcher for one image with this given cost."""
    matcher = HungarianMatcher({"given": (1.0, given)})
    (queries, targets), = matcher({"images": torch.zeros(1)}, [{"cost": torch.tensor(cost)}])
    assert queries.dtype == targets.dtype == torch.int64
    return queries.tolist(), targets.tolist()


def test_more_queries_than_objects():
    # totals: q0-t1 + q1-t0 = 1 + 2 = 3, the next best (q1-t0 + q2-t1, q2-t0 + q0-t1) 4
    assert match_one([[4.0, 1.0], [2.0, 5.0], [3.0, 2.0]]) == ([0, 1], [1, 0])


def test_more_objects_than_queries():
    # the transpose of the case above: query 0 takes target 1, query 1 target 0
    assert match_one([[4.0, 2.0, 3.0], [1.0, 5.0, 2.0]]) == ([0, 1], [1, 0])


def test_no_objects_gives_empty_int64_indices():
    matcher = HungarianMatcher({"class": 1.0, "dice": 1.0})
    predictions = {"pred_logits": torch.randn(1, 3, 4), "pred_masks": torch.randn(1, 3, 5, 5)}
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 5, 5)}]
    (queries, objects), = matcher(predictions, targets)
    assert queries.shape == objects.shape == (0,)
    assert queries.dtype == objects.dtype == torch.int64


def test_random_costs_reach_the_brute_force_optimum():
    generator = torch.Generator().manual_seed(0)
    for rows, cols in [(4, 4), (5, 3), (3, 5), (6, 2), (1, 4)]:
        cost = torch.rand(rows, cols, generator=generator, dtype=torch.float64)
        queries, targets = linear_assignment(cost)
        assert len(queries) == min(rows, cols) and queries.tolist() == sorted(queries.tolist())
        assert len(set(targets.tolist())) == len(targets)
        total = cost[queries, targets].sum().item()
        assert total == pytest.approx(brute_force(cost.numpy()), abs=1e-12)


def test_class_cost_is_minus_the_softmax_probability_of_the_class():
    # softmax([0, ln 3]) = [1/4, 3/4]
    predictions = {"pred_logits": torch.tensor([[0.0, math.log(3.0)]])}
    cost = class_cost(predictions, {"labels": torch.tensor([1, 0, 1])})
    assert torch.allclose(cost, torch.tensor([[-0.75, -0.25, -0.75]]))


def test_focal_class_cost_by_hand():
    # p = 1/2: 0.25 * 0.5^2 * ln 2 - 0.75 * 0.5^2 * ln 2 = -0.125 ln 2
    cost = focal_class_cost({"pred_logits": torch.zeros(2, 3)}, {"labels": torch.tensor([2])})
    assert cost.shape == (2, 1)
    assert torch.allclose(cost, torch.full((2, 1), -0.125 * math.log(2.0)))


def test_dice_cost_by_hand():
    # query 0 covers the top row, query 1 the left column (logits +-30: p = 1 or 0 within 1e-13)
    pred_masks = torch.tensor([[[30.0, 30.0], [-30.0, -30.0]], [[30.0, -30.0], [30.0, -30.0]]])
    masks = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    cost = dice_cost({"pred_masks": pred_masks}, {"masks": masks})
    # 1 - (2 |p t| + 1) / (|p| + |t| + 1): [[1 - 5/5, 1 - 3/4], [1 - 3/5, 1 - 3/4]]
    assert torch.allclose(cost, torch.tensor([[0.0, 0.25], [0.4, 0.25]]), atol=1e-6)


def test_batch_of_two_images_with_different_target_counts():
    """Class and Dice costs: each query predicts one class and one quadrant of a 4 x 4 image;
    the targets are in another order, image 0 with 2 objects, image 1 with 3."""
    quadrants = torch.zeros(4, 4, 4)
    quadrants[0, :2, :2] = quadrants[1, :2, 2:] = quadrants[2, 2:, :2] = quadrants[3, 2:, 2:] = 1
    logits = torch.full((2, 4, 5), -5.0)
    logits[:, torch.arange(4), torch.arange(4)] = 5.0  # query q says class q
    predictions = {"pred_logits": logits, "pred_masks": (quadrants * 20 - 10).expand(2, -1, -1, -1)}
    targets = [{"labels": torch.tensor([2, 0]), "masks": quadrants[[2, 0]]},
               {"labels": torch.tensor([3, 1, 2]), "masks": quadrants[[3, 1, 2]]}]
    matcher = HungarianMatcher({"class": 1.0, "dice": 1.0})
    (q0, t0), (q1, t1) = matcher(predictions, targets)
    assert (q0.tolist(), t0.tolist()) == ([0, 2], [1, 0])
    assert (q1.tolist(), t1.tolist()) == ([1, 2, 3], [1, 2, 0])


def test_weights_change_the_assignment():
    """Cost a prefers the diagonal, cost b the anti-diagonal; the heavier one wins."""
    a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def match(weight_a, weight_b):
        matcher = HungarianMatcher({"a": (weight_a, lambda p, t: t["a"]),
                                    "b": (weight_b, lambda p, t: t["b"])})
        (queries, targets), = matcher({"images": torch.zeros(1)}, [{"a": a, "b": b}])
        return targets.tolist()

    assert match(1.0, 0.5) == [0, 1]
    assert match(0.5, 1.0) == [1, 0]


def test_forbidden_pairs_are_left_out():
    inf, nan = math.inf, math.nan
    # only column 1 is allowed: it goes to the cheaper query, column 0 to nobody
    assert match_one([[inf, 1.0], [nan, 2.0]]) == ([0], [1])
    # as many allowed pairs as possible first (2 pairs costing 11, not 1 pair costing 0)
    assert match_one([[0.0, 10.0], [1.0, inf]]) == ([0, 1], [1, 0])
    # nothing allowed: nothing matched
    assert match_one([[inf, nan]]) == ([], [])


def test_forbidden_cost_can_be_given():
    """With a forbidden cost below the allowed spread, the cheaper single pair wins."""
    queries, targets = linear_assignment(np.array([[0.0, 10.0], [1.0, np.inf]]),
                                         forbidden_cost=5.0)
    assert (queries.tolist(), targets.tolist()) == ([0], [0])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown cost 'mask_iou'.*class, focal_class, dice"):
        HungarianMatcher({"mask_iou": 1.0})
    with pytest.raises(ValueError, match="at least one cost"):
        HungarianMatcher({})
    matcher = HungarianMatcher({"a": (1.0, lambda p, t: torch.zeros(3, 2)),
                                "b": (1.0, lambda p, t: torch.zeros(3, 4))})
    with pytest.raises(ValueError, match=r"cost 'b' has shape \(3, 4\), the costs before it "
                                         r"\(3, 2\)"):
        matcher({"x": torch.zeros(1)}, [{}])
    with pytest.raises(ValueError, match=r"2 images of targets but predictions for \{'x': 1\}"):
        matcher({"x": torch.zeros(1)}, [{}, {}])
    with pytest.raises(ValueError, match=r"\(rows, columns\) cost, got shape \(3,\)"):
        linear_assignment(torch.zeros(3))
