"""FCOS, BlendMask, CenterMask and BlitzMask compute what they computed when the fixtures were
saved (``golden_outputs.py``): the same losses, gradients and detections on fixed weights and
inputs, so that moving code (e.g. into shared building blocks) provably changes no output."""
import numpy as np
import pytest
import torch
from golden_outputs import MODELS, compute, fixture_path

MAX_FLIPPED_MASK_PIXELS = 1e-3  # share of thresholded mask pixels allowed to differ (rounding)


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_equal_the_saved_ones(name):
    expected = torch.load(fixture_path(name), weights_only=True)
    actual = compute(name)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        if key == "pred_masks_bits":
            flipped = np.unpackbits(actual[key].numpy() ^ value.numpy()).mean()
            assert flipped <= MAX_FLIPPED_MASK_PIXELS, f"{key}: {flipped:.2%} of pixels differ"
        else:
            torch.testing.assert_close(actual[key], value, rtol=1e-4, atol=1e-5, msg=key)
