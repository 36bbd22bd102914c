"""Pairing two predictors' instances of one image (PyTorch against ONNX Runtime), shared by the
export tests: rtinst's pairing rule (``rtinst.export.pair_instances``), every instance paired;
and the two predictors side by side on the shared COCO photos."""
from rtinst.export import compare_instances, mask_iou, pair_instances as _pair_instances
from shared_files import coco_photos

__all__ = ["mask_iou", "pair_instances", "parity_on_coco_photos"]


def pair_instances(expected, actual, score_tol):
    """(i, j) pairs of ``expected``'s and ``actual``'s instances (``Instances``): same class,
    scores within ``score_tol``, the closest box; asserts that every instance has a partner."""
    pairs = _pair_instances(expected, actual, score_tol)
    unpaired = sorted(set(range(len(expected))) - {i for i, _ in pairs})
    assert not unpaired, f"no partner for instances {unpaired} ({expected.scores[unpaired]})"
    return pairs


def parity_on_coco_photos(predictor, onnx_predictor, count=8):
    """[(photo, expected, actual, InstanceParity)]: ``predictor`` (PyTorch) and
    ``onnx_predictor`` on ``count`` COCO photos of distinct sizes, instances matched as sets
    (``compare_instances``, scores within 1e-3); asserts both answer at the photo's size."""
    results = []
    for photo in coco_photos(count):
        expected = predictor(photo)["instances"]
        actual = onnx_predictor(photo)["instances"]
        assert actual.image_size == expected.image_size == photo.shape[:2]
        results.append((photo, expected, actual,
                        compare_instances(expected, actual, score_tol=1e-3)))
    return results
