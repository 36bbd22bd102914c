"""Pairing two predictors' instances of one image (PyTorch against ONNX Runtime), shared by the
export tests."""

__all__ = ["mask_iou", "pair_instances"]


def pair_instances(expected, actual, score_tol):
    """(i, j) pairs of ``expected``'s and ``actual``'s instances (``Instances``): same class,
    scores within ``score_tol``, the closest box; asserts that every instance has a partner."""
    free, pairs = set(range(len(actual))), []
    for i in range(len(expected)):
        candidates = [j for j in free
                      if actual.pred_classes[j] == expected.pred_classes[i]
                      and abs(actual.scores[j] - expected.scores[i]) <= score_tol]
        assert candidates, f"no partner for instance {i} ({expected.scores[i]:.4f})"
        j = min(candidates, key=lambda j: (actual.pred_boxes.tensor[j] -
                                           expected.pred_boxes.tensor[i]).abs().max())
        free.remove(j)
        pairs.append((i, j))
    return pairs


def mask_iou(a, b):
    """IoU of two boolean masks (1 when both are empty)."""
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0
