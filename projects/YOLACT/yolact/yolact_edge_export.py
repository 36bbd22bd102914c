"""YolactEdge's ONNX export (``rtinst.export``): with ``MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL`` 1
every frame is a keyframe and the model exports as YOLACT's one image graph; otherwise as a video
pipeline (``rtinst.export.graphs``) that ``VideoONNXPredictor`` chains:

* the keyframe graph: YOLACT's whole inference (``YOLACTExportPipeline``), writing the top-down
  FPN sums of the warped levels and the C3 lateral as the state;
* the frame graph: the backbone up to C3, FlowNetMini, the warp of the state's sums, the FPN's
  output convolutions, ProtoNet, the head and the same post-processing.
"""
import torch
from torch import nn

from rtinst.export.graphs import GraphSpec

from .export import YOLACTExportPipeline
from .yolact_edge import KeyframeFeatures

__all__ = ["YolactEdgeVideoPipeline", "yolact_edge_export_pipeline"]


def state_names(model) -> tuple:
    """The state's names: ``sum_p4``, ``sum_p5`` (the warped levels) and ``lateral_p3``."""
    levels = [f"p{i + 3}" for i in range(len(model.backbone.in_features))]
    return (*(f"sum_{p}" for p in levels[len(levels) - model.num_warped:]), "lateral_p3")


class KeyframeGraph(YOLACTExportPipeline):
    """(image, image_size) -> (boxes, scores, classes, masks, *the keyframe's features)."""

    def forward(self, image: torch.Tensor, image_size: torch.Tensor):
        x = self.network_input(image, image_size)
        features, kept = self.model.keyframe_features(x)
        outputs = self.model.predict_from_features(features, tuple(x.shape[-2:]))
        return (*self.detections(*outputs, image_size), *kept.sums, kept.lateral)


class FrameGraph(YOLACTExportPipeline):
    """(image, image_size, *the keyframe's features) -> (boxes, scores, classes, masks)."""

    def forward(self, image: torch.Tensor, image_size: torch.Tensor, *state: torch.Tensor):
        x = self.network_input(image, image_size)
        features = self.model.warped_features(x, KeyframeFeatures(tuple(state[:-1]), state[-1]))
        return self.detections(*self.model.predict_from_features(features, tuple(x.shape[-2:])),
                               image_size)


class YolactEdgeVideoPipeline(nn.Module):
    """The keyframe and frame graphs, a keyframe every ``keyframe_interval`` frames."""

    picture_fit = YOLACTExportPipeline.picture_fit

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.keyframe = KeyframeGraph(model, height, width)
        self.frame = FrameGraph(model, height, width)
        self.keyframe_interval = model.keyframe_interval
        self.state = state_names(model)

    def graphs(self):
        return {"keyframe": GraphSpec(self.keyframe, (), self.state),
                "frame": GraphSpec(self.frame, self.state, ())}


def yolact_edge_export_pipeline(model: nn.Module, height: int, width: int) -> nn.Module:
    """YOLACT's image pipeline when every frame is a keyframe, else the video pipeline."""
    if model.keyframe_interval == 1:
        return YOLACTExportPipeline(model, height, width)
    return YolactEdgeVideoPipeline(model, height, width)
