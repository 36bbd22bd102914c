"""MobileInst's ONNX export (``rtinst.export``): the whole inference, NMS-free post-processing
included, in the graph.

With ``MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES`` 1 the model exports as one image graph
(``FixedSizePipeline``); with T > 1 as a video pipeline (``rtinst.export.graphs``): the
keyframe graph (the whole network; it writes its k selected queries' scores, classes and
kernels as the state) and the reuse graph (backbone and mask decoder only, the masks from the
state's kernels, Eq. 1), a keyframe every T frames, which ``VideoONNXPredictor`` chains.
"""
import torch
from torch import nn

from rtinst.export import FixedSizePipeline
from rtinst.export.graphs import GraphSpec

from .inference import Selection
from .mobileinst import FrameMaps

__all__ = ["MobileInstVideoPipeline", "mobileinst_export_pipeline"]

STATE = ("scores", "classes", "kernels")  # the keyframe's Selection


class KeyframeGraph(FixedSizePipeline):
    """(image, image_size) -> (boxes, scores, classes, masks, *the selection)."""

    def normalised(self, image):
        x = image.permute(2, 0, 1).float()
        return ((x - self.model.pixel_mean) / self.model.pixel_std)[None]

    def forward(self, image, image_size=None):
        maps = self.model.predict_maps(self.normalised(image))
        maps = FrameMaps(*(m[0] for m in maps))
        selection = self.model.select(maps)
        boxes, scores, classes, masks = self.model.instances_tensors(
            selection, maps.mask_features, self.size, self.size, image_size)
        return (boxes, scores, classes, masks.to(torch.uint8), *selection)


class ReuseGraph(KeyframeGraph):
    """(image, image_size, *the keyframe's selection) -> (boxes, scores, classes, masks)."""

    def forward(self, image, image_size, scores, classes, kernels):
        mask_features = self.model.encode(self.normalised(image))[1][0]
        boxes, scores, classes, masks = self.model.instances_tensors(
            Selection(scores, classes, kernels), mask_features, self.size, self.size, image_size)
        return boxes, scores, classes, masks.to(torch.uint8)


class MobileInstVideoPipeline(nn.Module):
    """The keyframe and reuse graphs, a keyframe every ``kernel_reuse_frames`` frames."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.keyframe = KeyframeGraph(model, height, width)
        self.reuse = ReuseGraph(model, height, width)
        self.keyframe_interval = model.kernel_reuse_frames

    def graphs(self):
        return {"keyframe": GraphSpec(self.keyframe, (), STATE),
                "frame": GraphSpec(self.reuse, STATE, ())}


def mobileinst_export_pipeline(model: nn.Module, height: int, width: int) -> nn.Module:
    """The image pipeline when every frame is a keyframe, else the video pipeline."""
    if model.kernel_reuse_frames == 1:
        return FixedSizePipeline(model, height, width)
    return MobileInstVideoPipeline(model, height, width)
