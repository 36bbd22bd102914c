"""A training data loader whose batches are a pure function of (seed, iteration).

Detectron2's loader draws its sample order and augmentations from stateful random streams that
restart when a job restarts, so ``--resume`` continued with other data than an uninterrupted
run would have seen. Here

* the stream of global batches is built from a seeded order per epoch (the training sampler's,
  ``DATALOADER.SAMPLER_TRAIN``: a permutation by default), grouped by aspect ratio
  (``DATALOADER.ASPECT_RATIO_GROUPING``) before any image is read, and resuming at iteration
  ``k`` skips its first ``k`` batches (index work only);
* every sample's augmentation RNG (``numpy`` / ``random``, which Detectron2's transforms use)
  is seeded from (seed, position in the stream), so it does not depend on the number of
  workers or on restarts;
* a sample the mapper skips (returns ``None``: unreadable image, no instance left) is replaced
  by a deterministic draw from the dataset.

Each process of a distributed run takes its slice of every global batch.
"""
import copy
import logging
import random
import signal
from collections import defaultdict

import numpy as np
import torch
from detectron2.data.build import get_detection_dataset_dicts, trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.utils import comm

from rtinst.errors import DatasetError
from rtinst.methods import find_part

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 100


def aspect_groups(dataset_dicts, enabled):
    """Group id per record: 0 for landscape, 1 for portrait images (all 0 when disabled)."""
    if not enabled:
        return np.zeros(len(dataset_dicts), dtype=np.int64)
    return np.array([0 if d["width"] > d["height"] else 1 for d in dataset_dicts], dtype=np.int64)


def shuffled_epochs(cfg, dataset_dicts):
    """``DATALOADER.SAMPLER_TRAIN "TrainingSampler"``: every epoch a permutation of the dataset."""
    return lambda rng: rng.permutation(len(dataset_dicts))


def repeat_factor_epochs(cfg, dataset_dicts):
    """``DATALOADER.SAMPLER_TRAIN "RepeatFactorTrainingSampler"`` (LVIS, Gupta et al. 2019, App.
    B.2): image i appears r_i = max(1, sqrt(t / f_c)) times an epoch in expectation, f_c being the
    share of images with its rarest category c and t ``DATALOADER.REPEAT_THRESHOLD`` (Detectron2's
    factors), rounded stochastically each epoch; the epoch is then shuffled."""
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD
    ).numpy()
    whole, fraction = np.floor(factors), factors - np.floor(factors)

    def epoch(rng):
        repeats = (whole + (rng.random(len(factors)) < fraction)).astype(np.int64)
        return rng.permutation(np.repeat(np.arange(len(factors)), repeats))

    return epoch


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Yields this process's part of every global batch from ``start_iter`` on, as lists of
    ``(position, index)``: ``position`` numbers samples in the global stream. ``epoch_order``
    gives the dataset indices of one epoch from the stream's generator (a training sampler's,
    e.g. ``shuffled_epochs``)."""

    def __init__(self, groups, total_batch_size, seed, start_iter=0, rank=0, world_size=1, *,
                 epoch_order):
        if total_batch_size % world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={total_batch_size} is not divisible by the "
                f"number of processes ({world_size})"
            )
        self._groups = np.asarray(groups)
        self._total = total_batch_size
        self._per_rank = total_batch_size // world_size
        self._seed = seed
        self._start_iter = start_iter
        self._rank = rank
        self._epoch_order = epoch_order

    def global_batches(self):
        """Infinite stream of global batches (lists of dataset indices)."""
        rng = np.random.Generator(np.random.PCG64(self._seed))
        buckets = defaultdict(list)
        while True:
            for idx in self._epoch_order(rng):
                bucket = buckets[self._groups[idx]]
                bucket.append(int(idx))
                if len(bucket) == self._total:
                    yield list(bucket)
                    bucket.clear()

    def __iter__(self):
        first = self._rank * self._per_rank
        for it, batch in enumerate(self.global_batches()):
            if it < self._start_iter:
                continue
            base = it * self._total + first
            yield [(base + k, idx) for k, idx in enumerate(batch[first : first + self._per_rank])]


class SeededMapDataset(torch.utils.data.Dataset):
    """Maps ``records[index]`` with the mapper, its RNG seeded from (seed, position)."""

    def __init__(self, records, mapper, seed):
        self._records = DatasetFromList(records, copy=False, serialize=True)
        self._mapper = mapper
        self._seed = seed

    def __len__(self):
        return len(self._records)

    def __getitem__(self, key):
        position, idx = key
        rng = np.random.Generator(np.random.PCG64([self._seed, position]))
        for _ in range(MAX_CONSECUTIVE_SKIPS):
            sample_seed = int(rng.integers(2**31))
            np.random.seed(sample_seed)
            random.seed(sample_seed)
            data = self._mapper(copy.deepcopy(self._records[idx]))
            if data is not None:
                return data
            idx = int(rng.integers(len(self._records)))
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_SKIPS} consecutive training samples were skipped "
            "(see the warnings above): is the dataset readable?"
        )


def check_masks(records, dataset_names, mask_format="polygon"):
    """A ``DatasetError`` naming the images whose annotations have no ``segmentation`` (video
    records: ``segmentations``): a model that predicts masks (``MODEL.MASK_ON``) cannot train on
    them; or RLE masks (e.g. video frames) on objects that are not crowds (Detectron2's mapper
    drops those) with ``INPUT.MASK_FORMAT "polygon"``."""
    def masks(annotation):
        return annotation.get("segmentation", annotation.get("segmentations"))

    unmasked = [r.get("file_name", r.get("video_id")) for r in records
                if any(masks(a) is None for a in r.get("annotations", ()))]
    rle = next((r.get("file_name", r.get("video_id")) for r in records
                if any(isinstance(a.get("segmentation"), dict) and not a.get("iscrowd", 0)
                       for a in r.get("annotations", ()))),
               None)
    if mask_format == "polygon" and rle is not None:
        raise DatasetError(
            f"{', '.join(dataset_names)}: {rle} has run-length-encoded masks, which "
            "INPUT.MASK_FORMAT \"polygon\" cannot read: set INPUT.MASK_FORMAT bitmask"
        )
    if unmasked:
        raise DatasetError(
            f"{len(unmasked)} image(s) of {', '.join(dataset_names)} have annotations without "
            f"'segmentation' (e.g. {', '.join(unmasked[:3])}), but the model predicts masks "
            "(MODEL.MASK_ON): give every annotation a polygon or RLE mask, or train a box model"
        )


def ignore_interrupts(worker_id=None):
    """Data-loader workers ignore Ctrl-C, which reaches the whole process group: the main
    process stops training cleanly (``rtinst.engine.interruption``) and ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def training_records(cfg):
    """The records of ``DATASETS.TRAIN`` (images without a non-crowd annotation left out when
    ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``); a ``DatasetError`` when none is left."""
    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise DatasetError("DATASETS.TRAIN is empty: name the dataset(s) to train on")
    try:
        return get_detection_dataset_dicts(
            names,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=0,
            proposal_files=None,
        )
    except AssertionError as e:  # Detectron2: "Dataset 'x' is empty!", "No valid data found"
        raise DatasetError(
            f"DATASETS.TRAIN {names}: nothing to train on ({e}): no image has an annotation "
            "(crowd annotations do not count)"
        ) from None


def build_resumable_train_loader(cfg, mapper, start_iter, seed):
    """The training loader for ``cfg`` from iteration ``start_iter`` on; the epochs' order comes
    from the training sampler named by ``DATALOADER.SAMPLER_TRAIN`` (any method can register
    one: ``rtinst.register_method(train_samplers=...)``)."""
    build_epoch_order = find_part("train_samplers", cfg.DATALOADER.SAMPLER_TRAIN,
                                  "DATALOADER.SAMPLER_TRAIN")
    records = training_records(cfg)
    if cfg.MODEL.MASK_ON:
        check_masks(records, cfg.DATASETS.TRAIN, cfg.INPUT.MASK_FORMAT)
    sampler = ResumableBatchSampler(
        aspect_groups(records, cfg.DATALOADER.ASPECT_RATIO_GROUPING),
        cfg.SOLVER.IMS_PER_BATCH,
        seed,
        start_iter=start_iter,
        rank=comm.get_rank(),
        world_size=comm.get_world_size(),
        epoch_order=build_epoch_order(cfg, records),
    )
    return torch.utils.data.DataLoader(
        SeededMapDataset(records, mapper, seed),
        batch_sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
        worker_init_fn=ignore_interrupts,
    )


class LazyTrainLoader:
    """An iterable that builds the real loader on the first ``next()``, when the trainer knows
    the iteration it resumes from (Detectron2 calls ``iter()`` on it before resuming)."""

    def __init__(self, build, start_iter_fn):
        self._build = build
        self._start_iter_fn = start_iter_fn

    def __iter__(self):
        yield from self._build(self._start_iter_fn())
