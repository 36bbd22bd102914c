"""Data parallelism computes what one worker computes: with the same seed and the same global
batch, 1 and 2 gloo workers give FCOS and BlendMask the same losses at iteration 0 (averaged over
the workers, as Detectron2's trainer logs them) and the same averaged gradients. This holds only
because every loss normaliser (FCOS's positive count and centerness sum, the blender's
centerness weights) is averaged over the workers (``rtinst.utils.comm.mean_over_workers``): the
two halves of the batch below have different numbers of objects."""
import pytest
import torch
import torch.multiprocessing as mp
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from tiny_models import batch_with_masks, tiny_blendmask_cfg, tiny_fcos_cfg

pytestmark = pytest.mark.ddp

# a global batch of four 128 px images; the first two hold 7 objects, the last two 3
GLOBAL_BATCH_BOXES = (
    [((0, 0, 128, 128), 0)],
    [((8, 8, 80, 80), 1), ((4, 92, 44, 124), 2), ((90, 4, 110, 24), 0),
     ((100, 100, 110, 110), 1), ((100, 60, 110, 70), 2), ((60, 100, 70, 110), 0)],
    [((8, 10, 40, 30), 0)],
    [((20, 24, 60, 60), 2), ((70, 70, 120, 110), 1)],
)
TOLERANCE = 1e-5


def _blendmask_cfg():
    cfg = tiny_blendmask_cfg()
    cfg.MODEL.BASIS_MODULE.NORM = "GN"  # BN statistics would differ per worker by design
    return cfg


CONFIGS = {"fcos": tiny_fcos_cfg, "blendmask": _blendmask_cfg}


def _worker(rank, world_size, name, store, result):
    """One worker: its share of the global batch, one forward/backward pass under DDP; rank 0
    saves the losses (averaged over workers) and the gradients (averaged by DDP)."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world_size)
    torch.manual_seed(0)
    model = DistributedDataParallel(build_model(CONFIGS[name]()).train())
    per_worker = len(GLOBAL_BATCH_BOXES) // world_size
    batch = batch_with_masks(GLOBAL_BATCH_BOXES[rank * per_worker:(rank + 1) * per_worker])
    with EventStorage():
        losses = model(batch)
    sum(losses.values()).backward()
    averaged = {}
    for key, value in sorted(losses.items()):
        value = value.detach().clone()
        dist.all_reduce(value)
        averaged[key] = value / world_size
    if rank == 0:
        gradients = {n: p.grad for n, p in model.module.named_parameters() if p.grad is not None}
        torch.save({"losses": averaged, "gradients": gradients}, result)
    dist.destroy_process_group()


def _run(name, world_size, folder):
    result = folder / f"{name}_{world_size}.pt"
    mp.spawn(_worker, args=(world_size, name, folder / f"store_{name}_{world_size}", result),
             nprocs=world_size)
    return torch.load(result, weights_only=True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_workers_compute_the_losses_and_gradients_of_one(name, tmp_path):
    one, two = _run(name, 1, tmp_path), _run(name, 2, tmp_path)
    assert one["losses"].keys() == two["losses"].keys()
    for key, value in one["losses"].items():
        torch.testing.assert_close(two["losses"][key], value, rtol=TOLERANCE, atol=TOLERANCE,
                                   msg=f"{key} at iteration 0")
    assert one["gradients"].keys() == two["gradients"].keys() and one["gradients"]
    for key, value in one["gradients"].items():
        torch.testing.assert_close(two["gradients"][key], value, rtol=TOLERANCE, atol=TOLERANCE,
                                   msg=f"averaged gradient of {key}")
