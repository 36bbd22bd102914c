"""The resumable training loader (rtinst/data/train_loader.py) directly: each worker's share of
a global batch, resuming, skipped samples replaced deterministically, the named sampler."""
import itertools

import numpy as np
import pytest

from rtinst.config import get_cfg
from rtinst.data.train_loader import (
    MAX_CONSECUTIVE_SKIPS,
    ResumableBatchSampler,
    SeededMapDataset,
    build_resumable_train_loader,
    shuffled_epochs,
)

GROUPS = [0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0]  # aspect-ratio group of 12 samples
SHUFFLED = shuffled_epochs(get_cfg(), GROUPS)  # TrainingSampler's order of the 12 samples


def _sampler(seed, total_batch_size=4, **kwargs):
    return ResumableBatchSampler(GROUPS, total_batch_size, seed, epoch_order=SHUFFLED, **kwargs)


def _batches(sampler, count):
    return list(itertools.islice(iter(sampler), count))


def test_workers_take_disjoint_slices_that_make_up_the_global_batch():
    single = _batches(_sampler(seed=3), 6)
    ranks = [_batches(_sampler(seed=3, rank=r, world_size=2), 6) for r in range(2)]
    for whole, first, second in zip(single, *ranks):
        assert len(first) == len(second) == 2
        assert first + second == whole  # (position, index) pairs, in order
        assert {p for p, _ in first}.isdisjoint(p for p, _ in second)
        groups = {GROUPS[i] for _, i in whole}
        assert len(groups) == 1  # a batch never mixes aspect-ratio groups


def test_resuming_at_iteration_k_continues_the_uninterrupted_stream():
    uninterrupted = _batches(_sampler(seed=5), 9)
    resumed = _batches(_sampler(seed=5, start_iter=6), 3)
    assert resumed == uninterrupted[6:]
    other_seed = _batches(_sampler(seed=6), 9)
    assert other_seed != uninterrupted


def test_a_global_batch_that_does_not_split_evenly_is_a_clear_error():
    with pytest.raises(ValueError, match=r"SOLVER.IMS_PER_BATCH=5 is not divisible by .* \(2\)"):
        _sampler(seed=0, total_batch_size=5, world_size=2)


def _skipping_mapper(bad):
    """A mapper returning None (a skipped sample) for the records in ``bad``, drawing one random
    number otherwise (as an augmentation would)."""
    return lambda record: None if record["id"] in bad else (record["id"], np.random.randint(1000))


def test_skipped_samples_are_replaced_the_same_way_on_every_run():
    records = [{"id": i} for i in range(8)]
    dataset = SeededMapDataset(records, _skipping_mapper({2, 5}), seed=1)
    keys = [(position, position % 8) for position in range(16)]
    first = [dataset[key] for key in keys]
    again = [SeededMapDataset(records, _skipping_mapper({2, 5}), seed=1)[key] for key in keys]
    assert first == again
    assert all(item is not None and item[0] not in (2, 5) for item in first)
    replaced = [item for (_, index), item in zip(keys, first) if item[0] != index]
    assert len(replaced) == 4  # the 4 draws of the two bad records, each replaced
    assert dataset[(3, 3)][1] != dataset[(11, 3)][1]  # augmentation seeded by position


def test_a_dataset_that_cannot_be_read_at_all_stops_with_a_clear_error():
    dataset = SeededMapDataset([{"id": 0}, {"id": 1}], _skipping_mapper({0, 1}), seed=0)
    with pytest.raises(RuntimeError, match=f"{MAX_CONSECUTIVE_SKIPS} consecutive training "
                                           "samples were skipped"):
        dataset[(0, 0)]


def test_the_loader_follows_the_named_sampler(tmp_path):
    """With RepeatFactorTrainingSampler, the image of the rare class comes twice an epoch."""
    import json

    import cv2

    images, annotations = [], []
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((32, 32, 3), 20 * i, np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 32, "width": 32})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 2 if i == 9 else 1,
                            "bbox": [4, 4, 10, 10], "area": 100, "iscrowd": 0})
    json_file = tmp_path / "a.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "common"}, {"id": 2, "name": "rare"}]}))
    from rtinst.data import register_coco_dataset

    name = f"repeat_factor_{tmp_path.name}"
    register_coco_dataset(name, str(json_file), str(tmp_path))
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", (name,), "DATALOADER.NUM_WORKERS", 0,
                         "SOLVER.IMS_PER_BATCH", 1, "INPUT.MIN_SIZE_TRAIN", (32,),
                         "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler",
                         "DATALOADER.REPEAT_THRESHOLD", 0.4])
    loader = build_resumable_train_loader(cfg, lambda record: record, start_iter=0, seed=0)
    first_epoch = [batch[0]["file_name"].split("/")[-1] for batch in itertools.islice(loader, 11)]
    assert sorted(first_epoch) == sorted([f"{i}.png" for i in range(10)] + ["9.png"])
