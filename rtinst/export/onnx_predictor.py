"""``ONNXPredictor``: runs an exported pipeline (``export_onnx``) with ONNX Runtime and returns
Detectron2 ``Instances``, as ``DefaultPredictor`` does for the PyTorch model.

The graph has a fixed input size. The image is resized as its metadata's ``picture_fit`` says:
"shortest_edge", as ``rtinst.engine.Predictor`` resizes it (Detectron2's ``ResizeShortestEdge``
with the config's test sizes: the same pixels), then placed in the top-left corner (a picture
larger than the graph is shrunk further to fit, with a warning: its outputs then differ from the
``Predictor``'s); "letterbox", the largest size that fits; "stretch" (a model that resizes every
picture to its square input, as YOLACT), the graph's size whatever the aspect ratio. The outputs
are mapped back to the original image: masks on the canvas ("image" ``mask_format``) resized,
masks as probabilities in their boxes ("box") pasted by Detectron2's ``detector_postprocess``,
mask logits on a stride grid ("grid") resized once by rtinst's ``grid_masks_to_image``, exactly
as the PyTorch models' post-processing does.

Images are checked as ``rtinst.engine.Predictor`` checks them (``check_image``: a clear
``ValueError`` for anything but a non-empty (H, W, 3) uint8 array), and the size the outputs are
mapped back to is bounded as there (``max_output_pixels``): the masks of a huge photo, mapped
back to it, would need gigabytes.
"""
from pathlib import Path

import logging

import cv2
import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from rtinst.engine.predictor import DEFAULT_MAX_OUTPUT_PIXELS, OutputSizeBound, check_image
from rtinst.modeling.layers import grid_masks_to_image

from .pipeline import EXPORT_OUTPUTS, INPUT_NAMES

__all__ = ["ONNXPredictor", "letterbox", "open_session"]

logger = logging.getLogger(__name__)
PICTURE_FITS = ("shortest_edge", "letterbox", "stretch")
MASK_FORMATS = ("image", "box", "grid", "none")


def letterbox(image: np.ndarray, height: int, width: int, fill):
    """``image`` (h, w, 3) resized by one scale to fit ``height`` x ``width`` and padded with
    ``fill`` at the bottom/right: (padded image, (resized h, resized w))."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = min(height, int(h * scale + 0.5)), min(width, int(w * scale + 0.5))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.empty((height, width, 3), dtype=np.uint8)
    padded[...] = np.asarray(fill, dtype=np.uint8)
    padded[:new_h, :new_w] = resized
    return padded, (new_h, new_w)


def open_session(path, num_threads: int, profile_prefix=None):
    """(ONNX Runtime CPU session, metadata_props) of ``path``, an ``export_onnx`` file. Its
    threads do not spin-wait after a run: spinning threads hold the cores for a while after each
    run and slow whatever runs next on them (the tracker, a PyTorch model, another session).
    With ``profile_prefix``, ONNX Runtime profiles every node (``session.end_profiling()``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    if "input_size" not in props:
        raise ValueError(f"{path} was not written by rtinst's export_onnx (no input_size)")
    return session, props


class ONNXPredictor:
    """Call with one BGR (h, w, 3) uint8 image (as read by cv2): ``{"instances": Instances}`` at
    h x w, or, when h x w exceeds ``max_output_pixels``, at the largest size of the same aspect
    ratio within it (``Instances.image_size``; a warning says so once), as
    ``rtinst.engine.Predictor`` does. Anything but a non-empty (h, w, 3) uint8 numpy array is a
    ``ValueError`` saying what to do (``rtinst.engine.predictor.check_image``). A video export's
    graphs are refused: ``VideoONNXPredictor`` runs them."""

    video_mode = False  # whether the graphs of a video export are welcome

    def __init__(self, path, num_threads: int = 2,
                 max_output_pixels=DEFAULT_MAX_OUTPUT_PIXELS):
        """
        Args:
            path: an ONNX file written by ``export_onnx`` (its metadata give the input size, the
                channel order and the colour that pads letterboxed images).
            num_threads: ONNX Runtime intra-op threads.
            max_output_pixels: the most pixels of the frame outputs are mapped back to (default
                1920x1080: 100 masks in well under 2 GB); None: always the image's own size
                (e.g. for COCO evaluation, whose annotations are at that size).
        """
        self.output_size = OutputSizeBound(max_output_pixels, type(self).__name__)
        self.session, props = open_session(path, num_threads)
        if "video" in props and not self.video_mode:
            raise ValueError(f"{path} is the {props.get('graph')!r} graph of a video export "
                             "(graphs that carry state from frame to frame): load it with "
                             "rtinst.export.VideoONNXPredictor")
        self.height, self.width = (int(v) for v in props["input_size"].split(","))
        self.input_format = props.get("input_format", "BGR")
        self.pad_value = tuple(int(v) for v in props.get("pad_value", "0,0,0").split(","))
        self.picture_fit = props.get("picture_fit", "letterbox")
        if self.picture_fit not in PICTURE_FITS:
            raise ValueError(f"{path}: unknown picture_fit {self.picture_fit!r} in its metadata")
        if self.picture_fit == "shortest_edge":
            min_size, max_size = (int(v) for v in props["resize_shortest_edge"].split(","))
            self.resize = T.ResizeShortestEdge([min_size, min_size], max_size)
        self.mask_format = props.get("mask_format", "image")
        if self.mask_format not in MASK_FORMATS:
            raise ValueError(f"{path}: unknown mask_format {self.mask_format!r} in its metadata")
        self.mask_threshold = float(props.get("mask_threshold", 0.5))
        if self.mask_format == "grid":
            missing = [k for k in ("mask_stride", "mask_crop_to_boxes") if k not in props]
            if missing:
                raise ValueError(f"{path}: grid masks without {missing} in its metadata")
            self.mask_stride = int(props["mask_stride"])
            self.crop_masks_to_boxes = props["mask_crop_to_boxes"] == "True"
        # a graph of any size (multiples of this); 0: of its input_size only
        self.size_divisibility = int(props.get("size_divisibility", 0))
        self.output_names = [output.name for output in self.session.get_outputs()]
        self._warned_shrink = False

    def run(self, image: np.ndarray, image_size=None):
        """The raw outputs (boxes, scores, classes, masks) for an image already in the graph's
        size and channel order, whose top-left ``image_size`` (h, w) holds the picture (default:
        all of it)."""
        return self.session.run(None, self.feeds(image, image_size))

    def feeds(self, image: np.ndarray, image_size=None):
        """The graph's named inputs for ``run``'s arguments."""
        size = np.asarray(image_size or (self.height, self.width), dtype=np.int64)
        return dict(zip(INPUT_NAMES, (np.ascontiguousarray(image), size)))

    def __call__(self, original_image: np.ndarray):
        return self.predict(*self.prepare(original_image),  # prepare checks the image
                            self.output_size(*original_image.shape[:2]))

    def prepare(self, bgr_image: np.ndarray):
        """``bgr_image`` as the graph takes it: (letterboxed image in the graph's channel order,
        (h, w) of the picture inside it)."""
        check_image(bgr_image)
        image = bgr_image[:, :, ::-1] if self.input_format == "RGB" else bgr_image
        if self.picture_fit == "stretch":
            image = cv2.resize(np.ascontiguousarray(image), (self.width, self.height),
                               interpolation=cv2.INTER_LINEAR)
            return image, (self.height, self.width)
        if self.picture_fit == "shortest_edge":
            image = self.resize.get_transform(image).apply_image(image)
            if self.size_divisibility:  # a graph of any size: padded as Detectron2 pads
                d = self.size_divisibility
                return self._place(image, -(-image.shape[0] // d) * d, -(-image.shape[1] // d) * d)
            if image.shape[0] <= self.height and image.shape[1] <= self.width:
                return self._place(image, self.height, self.width)
            self._warn_shrink(bgr_image.shape[:2], image.shape[:2])
        return letterbox(image, self.height, self.width, self.pad_value)

    def _place(self, image: np.ndarray, height: int, width: int):
        """``image`` in the top-left corner of a ``height`` x ``width`` canvas: (canvas, (h, w))."""
        canvas = np.empty((height, width, 3), dtype=np.uint8)
        canvas[...] = np.asarray(self.pad_value, dtype=np.uint8)
        canvas[:image.shape[0], :image.shape[1]] = image
        return canvas, image.shape[:2]

    def _warn_shrink(self, original, resized):
        if not self._warned_shrink:
            self._warned_shrink = True
            logger.warning(
                f"{type(self).__name__}: a {original[0]}x{original[1]} photo resized as the "
                f"Predictor does is {resized[0]}x{resized[1]}, larger than the graph's "
                f"{self.height}x{self.width}: shrunk to fit, so its outputs differ from the "
                "Predictor's (export at a size that holds the photos: --size; said once)")

    def predict(self, image: np.ndarray, image_size, output_size):
        """``{"instances"}`` in the ``output_size`` (h, w) frame for an ``image`` in the graph's
        size and channel order whose top-left ``image_size`` (h, w) holds the picture."""
        outputs = dict(zip(self.output_names, self.run(image, image_size)))
        if self.mask_format in ("box", "none"):
            return {"instances": self._in_boxes(outputs, image_size, output_size)}
        boxes, scores, classes, masks = (outputs[name] for name in EXPORT_OUTPUTS)
        (new_h, new_w), (height, width) = image_size, output_size
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(torch.from_numpy(boxes))
        instances.pred_boxes.scale(width / new_w, height / new_h)
        instances.pred_boxes.clip((height, width))
        instances.scores = torch.from_numpy(scores)
        instances.pred_classes = torch.from_numpy(classes)
        if self.mask_format == "grid":
            instances.pred_masks = grid_masks_to_image(
                torch.from_numpy(masks), self.mask_stride, image_size, output_size,
                self.mask_threshold,
                instances.pred_boxes.tensor if self.crop_masks_to_boxes else None)
            return {"instances": instances}
        masks = torch.from_numpy(masks[:, :new_h, :new_w]).float()
        if len(masks) and (new_h, new_w) != (height, width):
            masks = F.interpolate(masks[None], size=(height, width), mode="bilinear",
                                  align_corners=False)[0]
        instances.pred_masks = masks.reshape(-1, height, width) >= 0.5
        return {"instances": instances}

    def _in_boxes(self, outputs, image_size, output_size) -> Instances:
        """Detections in the picture's frame (masks as probabilities in their boxes) mapped to
        ``output_size`` by Detectron2's ``detector_postprocess``, as the PyTorch models do."""
        instances = Instances(tuple(int(v) for v in image_size))
        instances.pred_boxes = Boxes(torch.from_numpy(outputs.pop("boxes")))
        instances.scores = torch.from_numpy(outputs.pop("scores"))
        instances.pred_classes = torch.from_numpy(outputs.pop("classes"))
        if "masks" in outputs:
            instances.pred_masks = torch.from_numpy(outputs.pop("masks"))[:, None]
        for name, value in outputs.items():  # e.g. CenterMask's mask_scores
            instances.set(name, torch.from_numpy(value))
        return detector_postprocess(instances, *output_size, mask_threshold=self.mask_threshold)
