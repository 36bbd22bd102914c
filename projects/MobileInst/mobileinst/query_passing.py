"""Temporal training via query passing (Sec. 3.5, Fig. 4): from a video, two frames t and
t + delta are sampled (``VideoClipMapper``, ``INPUT.VIDEO.SAMPLING_FRAME_NUM`` 2, delta within
``INPUT.VIDEO.SAMPLING_FRAME_RANGE``); the global decoder's queries Q_G^t of frame t go, in
place of frame t + delta's own, into the local decoder with frame t + delta's local features.
The masks M~^{t+delta} they give are matched to and supervised by frame t + delta's objects
with the same losses (no extra module or loss): ``MobileInst.losses`` appends them to the batch
as one more image.

This module flattens a training batch into frames and says which frames pass queries.
"""
from typing import Dict, List, Tuple

__all__ = ["frames_of_batch"]


def frames_of_batch(batched_inputs: List[Dict], query_passing: bool
                    ) -> Tuple[List[Dict], List[Tuple[int, int]]]:
    """(frames, pairs): every image of the batch, the frames of a clip sample (``"frames"``,
    in time order) one after the other; with ``query_passing``, for each clip of two frames or
    more the (index of its first frame, index of its last) in ``frames``."""
    frames, pairs = [], []
    for sample in batched_inputs:
        if "frames" not in sample:
            frames.append(sample)
            continue
        first = len(frames)
        frames.extend(sample["frames"])
        if query_passing and len(sample["frames"]) > 1:
            pairs.append((first, len(frames) - 1))
    return frames, pairs
