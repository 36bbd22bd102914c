"""The shared/ folder beside the repository: the reference implementations' checkpoint key lists
(reference/checkpoint_keys) and real COCO images (data/coco_train2017_mini). CI has it, a user's
clone may not: every reader goes through ``require_shared``, which skips the test naming what is
missing."""
from pathlib import Path

import cv2
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
KEY_LISTS = SHARED / "reference" / "checkpoint_keys"
COCO_MINI = SHARED / "data" / "coco_train2017_mini"


def require_shared(path):
    """``path`` (under ``SHARED``) if it exists; else the calling test is skipped, naming it."""
    path = Path(path)
    if not path.exists():
        pytest.skip(f"needs {path}: the shared/ folder beside the repository (CI has it) is "
                    f"absent or incomplete")
    return path


def coco_photos(count=8):
    """``count`` BGR COCO photos of distinct sizes (landscape, portrait, near-square)."""
    photos, sizes = [], set()
    for path in sorted((require_shared(COCO_MINI) / "train2017").glob("*.jpg")):
        image = cv2.imread(str(path))
        if image.shape[:2] not in sizes:
            sizes.add(image.shape[:2])
            photos.append(image)
        if len(photos) == count:
            return photos
    raise AssertionError(f"too few COCO photos of distinct sizes in {COCO_MINI}")


def reference_shapes(name):
    """{parameter name: shape} of ``<name>.tsv`` (e.g. "adet_fcos_R_50_1x")."""
    shapes = {}
    for line in require_shared(KEY_LISTS / f"{name}.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape, _ = line.split("\t")
        shapes[key] = tuple(int(d) for d in shape.split("x")) if shape != "scalar" else ()
    return shapes


def reference_state_dict(name):
    """A state dict with the reference checkpoint's names and shapes and random values
    (float parameters; int64 counters), as a published checkpoint would be laid out."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for line in require_shared(KEY_LISTS / f"{name}.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        size = tuple(int(d) for d in shape.split("x")) if shape != "scalar" else ()
        if dtype == "int64":
            state[key] = torch.zeros(size, dtype=torch.int64)
        else:
            state[key] = torch.rand(size, generator=generator) + 0.5  # > 0: valid variances
    return state


def assert_same_parameters(model, name):
    """The model's state dict has exactly the reference's names and shapes."""
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    reference = reference_shapes(name)
    extra, missing = sorted(set(ours) - set(reference)), sorted(set(reference) - set(ours))
    assert not extra, f"not in {name}: {extra}"
    assert not missing, f"missing from the model: {missing}"
    wrong = {k: (v, reference[k]) for k, v in ours.items() if reference[k] != v}
    assert not wrong, f"shapes (ours, {name}): {wrong}"


def assert_reference_checkpoint_loads(model, name, folder):
    """A checkpoint laid out as the reference's ``<name>.tsv`` (random values) loads into
    ``model`` by name with rtinst's checkpointer, every tensor arriving unchanged."""
    from rtinst.checkpoint import SafeCheckpointer

    assert_same_parameters(model, name)
    state = reference_state_dict(name)
    path = Path(folder) / f"{name}.pth"
    torch.save({"model": state}, path)
    SafeCheckpointer(model).load(str(path))
    loaded = model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, msg=key)
