"""Pairing two predictors' instances of one image (PyTorch against ONNX Runtime), shared by the
export tests: rtinst's pairing rule (``rtinst.export.pair_instances``), every instance paired."""
from rtinst.export import mask_iou, pair_instances as _pair_instances

__all__ = ["mask_iou", "pair_instances"]


def pair_instances(expected, actual, score_tol):
    """(i, j) pairs of ``expected``'s and ``actual``'s instances (``Instances``): same class,
    scores within ``score_tol``, the closest box; asserts that every instance has a partner."""
    pairs = _pair_instances(expected, actual, score_tol)
    unpaired = sorted(set(range(len(expected))) - {i for i, _ in pairs})
    assert not unpaired, f"no partner for instances {unpaired} ({expected.scores[unpaired]})"
    return pairs
