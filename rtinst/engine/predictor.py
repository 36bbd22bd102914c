"""``Predictor``: Detectron2's ``DefaultPredictor`` made safe for what users hand it.

* weights load through ``rtinst.checkpoint.SafeCheckpointer`` (no code in a checkpoint runs) and
  strictly (``load_weights``): a checkpoint whose parameters do not fit the model is an error, not
  a randomly initialised head;
* images are checked (``check_image``) before anything else touches them;
* on CPU it runs the model optimised for inference (``TEST.OPTIMIZE_FOR_INFERENCE``, on by
  default: BatchNorms folded, channels-last weights, wide 3 x 3 convolutions by Winograd's
  algorithm), the outputs unchanged but for float rounding (``optimizes_for_inference``);
* the output resolution is bounded (``bounded_output_size``), so that a 48-megapixel photo does not
  need gigabytes for its pasted masks.

``check_image`` and the output bound are shared with ``rtinst.export.ONNXPredictor``.
"""
import logging
import math
import threading

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from fvcore.common.checkpoint import _filter_reused_missing_keys

from rtinst.checkpoint import SafeCheckpointer
from rtinst.errors import CheckpointError
from rtinst.modeling.inference_fusion import optimize_for_inference

__all__ = [
    "DEFAULT_MAX_OUTPUT_PIXELS",
    "OutputSizeBound",
    "Predictor",
    "bounded_output_size",
    "check_image",
    "load_weights",
    "optimizes_for_inference",
]

logger = logging.getLogger(__name__)

# Full HD: 100 boolean masks at this size take 207 MB, and the float maps some methods resize to
# it before thresholding 4 bytes a pixel more (~0.8 GB for 100): well under 2 GB.
DEFAULT_MAX_OUTPUT_PIXELS = 1920 * 1080

MAX_LISTED = 5  # keys named in a checkpoint error; the rest are counted


# ---------------------------------------------------------------------------- images


def check_image(image):
    """Raises a ``ValueError`` saying what is wrong unless ``image`` is what the predictors take:
    a numpy array of shape (H, W, 3), H and W > 0, dtype uint8. Returns ``image``."""
    if not isinstance(image, np.ndarray):
        hint = ""
        if isinstance(image, torch.Tensor):
            hint = ": convert a tensor with image.cpu().numpy() (H, W, 3 uint8)"
        elif hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
            hint = ": convert a PIL image with np.asarray(image.convert('RGB'))[:, :, ::-1] (BGR)"
        raise ValueError(f"image must be a numpy array (H, W, 3) of uint8, got "
                         f"{type(image).__module__}.{type(image).__name__}{hint}")
    if image.ndim in (2, 3) and 0 in image.shape[:2]:
        raise ValueError(f"image is empty: {image.shape[0]}x{image.shape[1]} pixels "
                         f"(shape {image.shape}); height and width must be > 0")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ValueError(
            f"image has shape {image.shape}: a single-channel (grayscale) image; convert it to 3 "
            "channels, e.g. with cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)")
    if image.ndim == 3 and image.shape[2] == 4:
        raise ValueError(
            f"image has shape {image.shape}: 4 channels (with alpha?); convert it to 3 channels, "
            "e.g. with cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.inexact):  # float or complex
            if not np.isfinite(image).all():
                raise ValueError(
                    f"image ({image.dtype}) has non-finite values (NaN or inf): fix the code that "
                    "made it, then convert it to uint8")
            raise ValueError(
                f"image must be uint8 (0-255), got {image.dtype}: convert it, e.g. "
                "np.clip(image * 255, 0, 255).round().astype(np.uint8) for values in [0, 1]")
        if image.dtype == np.uint16:
            raise ValueError("image must be uint8 (0-255), got uint16 (a 16-bit image): convert "
                             "it, e.g. (image >> 8).astype(np.uint8)")
        raise ValueError(f"image must be uint8 (0-255), got {image.dtype}: convert it, e.g. "
                         "np.clip(image, 0, 255).astype(np.uint8)")
    return image


def bounded_output_size(height, width, max_pixels):
    """(h, w): ``height`` x ``width`` if it has at most ``max_pixels`` pixels (or ``max_pixels``
    is None), else the largest size of the same aspect ratio (each side >= 1) that has."""
    if max_pixels is None or height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h, w = max(1, int(height * scale)), max(1, int(width * scale))
    while h * w > max_pixels and max(h, w) > 1:  # rounding of a very thin image
        h, w = max(1, h - (h >= w)), max(1, w - (w > h))
    return h, w


class OutputSizeBound:
    """The output size of each image under ``max_pixels`` (None: unbounded), with one warning
    (per object, thread-safe) the first time an image is shrunk."""

    def __init__(self, max_pixels, owner="Predictor"):
        if max_pixels is not None and (int(max_pixels) != max_pixels or max_pixels < 1):
            raise ValueError(f"max_output_pixels must be a positive integer or None, "
                             f"got {max_pixels!r}")
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self._owner = owner
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, height, width):
        size = bounded_output_size(height, width, self.max_pixels)
        if size != (height, width):
            with self._lock:
                warn, self._warned = not self._warned, True
            if warn:
                logger.warning(
                    f"{self._owner}: a {height}x{width} image is over max_output_pixels="
                    f"{self.max_pixels}: its outputs (boxes, masks) are at {size[0]}x{size[1]} "
                    "(Instances.image_size); scale boxes by the ratio, or give "
                    "max_output_pixels=None for full resolution (this is said once)")
        return size


# ---------------------------------------------------------------------------- weights


def _listing(items):
    items = list(items)
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _unloaded_problems(model, incompatible):
    """What a checkpoint left unloaded that would make predictions wrong: a message, or None."""
    problems = []
    if incompatible.incorrect_shapes:
        shapes = [f"{k} (checkpoint {tuple(c)}, model {tuple(m)})"
                  for k, c, m in incompatible.incorrect_shapes]
        problems.append(f"{len(shapes)} parameter(s) have other shapes than the model's "
                        f"(another class count or config?): {_listing(shapes)}")
    missing = _filter_reused_missing_keys(model, list(incompatible.missing_keys))
    # not used at inference (and added by BatchNorm for old checkpoints)
    missing = sorted(k for k in missing if not k.endswith("num_batches_tracked"))
    if missing:
        problems.append(f"{len(missing)} of the model's parameters/buffers are not in the "
                        f"checkpoint (a partial or another model's checkpoint?): "
                        f"{_listing(missing)}")
    return "; ".join(problems) or None


class _StrictCheckpointer(SafeCheckpointer):
    """A ``SafeCheckpointer`` that refuses a checkpoint leaving any of the model's parameters or
    persistent buffers at their initial values (wrong shapes, missing keys). Keys of the
    checkpoint the model does not have are only logged."""

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        problem = _unloaded_problems(self.model, incompatible)
        if problem:
            raise CheckpointError(f"does not fit the model: {problem}")
        return incompatible


def load_weights(model, weights):
    """Loads ``weights`` (a local file, or a URL SafeCheckpointer can fetch) into ``model``
    through ``SafeCheckpointer`` (no code in the file runs), strictly: a ``CheckpointError``
    naming the file when it cannot be fetched or read, or leaves any of the model's parameters or
    persistent buffers unloaded (other shapes, e.g. another class count: the first keys with
    both shapes; keys missing from it). An empty ``weights`` loads nothing, with a warning that
    the predictions come from random weights. Returns a description of the weights."""
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the model keeps its random initialisation, so "
                       "its predictions are meaningless")
        return "random init"
    checkpointer = _StrictCheckpointer(model)
    try:
        checkpointer.load(weights)
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if weights in message else f"{weights}: {message}") from e
    except AssertionError as e:  # fvcore's "Checkpoint ... not found!" for odd paths
        raise CheckpointError(f"cannot load checkpoint {weights}: {e}") from e
    return f"file {weights}"


# ---------------------------------------------------------------------------- predictor


def optimizes_for_inference(cfg):
    """Whether ``Predictor`` runs ``cfg``'s model optimised (``optimize_for_inference``):
    ``TEST.OPTIMIZE_FOR_INFERENCE`` and ``MODEL.DEVICE`` a CPU (on GPU: as built)."""
    return bool(cfg.TEST.OPTIMIZE_FOR_INFERENCE) and torch.device(cfg.MODEL.DEVICE).type == "cpu"


class Predictor:
    """Detectron2's ``DefaultPredictor``, with safe weights, checked inputs and bounded memory.

    ``Predictor(cfg)(image)`` -> ``{"instances": Instances}`` for one BGR image (as
    ``cv2.imread`` gives it; converted to ``cfg.INPUT.FORMAT``) of shape (H, W, 3), dtype uint8,
    resized as ``cfg.INPUT.{MIN,MAX}_SIZE_TEST`` say; the model runs in eval mode without
    gradients. Calls from several threads are as safe as ``DefaultPredictor``'s (the predictor
    itself keeps no per-call state).

    Differences from ``DefaultPredictor``:

    * ``cfg.MODEL.WEIGHTS`` is loaded by ``load_weights``: through ``SafeCheckpointer`` (a
      checkpoint never runs code), and strictly: a ``CheckpointError`` when the checkpoint leaves
      any parameter unloaded (parameters of other shapes, e.g. another class count than the
      config's, named with both shapes; keys missing from it), or cannot be fetched. An empty
      ``MODEL.WEIGHTS`` is a warning: the predictions come from random weights.
    * The image is checked first (``check_image``): a ``ValueError`` saying what to do for
      anything but a non-empty (H, W, 3) uint8 numpy array (float images, non-finite values,
      grayscale or 4-channel arrays, tensors).
    * Memory is bounded for huge images: masks are pasted at the output size, 1 byte a pixel per
      instance (and 4 in float maps some methods resize first), so 100 masks of a 6000x8000
      photo would need 5-20 GB. When H x W exceeds ``max_output_pixels`` (default
      ``DEFAULT_MAX_OUTPUT_PIXELS``, 1920x1080: 100 masks in well under 2 GB), the model is asked
      for outputs at the largest size of the same aspect ratio within it (the "height"/"width"
      of its input), a warning says so once, and the returned ``Instances.image_size`` is that
      size (boxes and masks are in its frame: multiply boxes by W / width to get back to the
      photo). The network input too is at most that size (it matters when
      ``INPUT.MIN_SIZE_TEST`` is 0, i.e. no resizing). ``max_output_pixels=None``: no bound.
    * On CPU the model runs optimised for inference (``optimizes_for_inference``): the same COCO
      AP as built on trained weights, detections equal to float rounding, not bit for bit;
      ``TEST.OPTIMIZE_FOR_INFERENCE False`` runs it as built (``DefaultPredictor``'s outputs).

    Attributes:
        cfg: a copy of the config. model: the model (eval mode), optimised when ``optimized``.
        metadata: the ``Metadata`` of ``cfg.DATASETS.TEST[0]`` when there is one. weights: what
        the model was loaded with.
    """

    def __init__(self, cfg, max_output_pixels=DEFAULT_MAX_OUTPUT_PIXELS):
        self.cfg = cfg.clone()  # cfg can be modified by model
        if self.cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.cfg.INPUT.FORMAT!r}")
        self.input_format = self.cfg.INPUT.FORMAT
        self.output_size = OutputSizeBound(max_output_pixels, type(self).__name__)
        self.model = build_model(self.cfg)
        self.model.eval()
        if len(self.cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(self.cfg.DATASETS.TEST[0])
        self.weights = load_weights(self.model, self.cfg.MODEL.WEIGHTS)
        self.optimized = optimizes_for_inference(self.cfg)
        if self.optimized:
            self.model = optimize_for_inference(self.model)
        self.aug = T.ResizeShortestEdge(
            [self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MIN_SIZE_TEST],
            self.cfg.INPUT.MAX_SIZE_TEST,
        )

    @property
    def max_output_pixels(self):
        return self.output_size.max_pixels

    def __call__(self, original_image):
        """
        Args:
            original_image (np.ndarray): (H, W, 3) uint8, BGR.

        Returns:
            dict: the model's outputs for this image, ``{"instances": Instances}`` for detectors,
            at H x W, or at the bounded size (see the class docstring).
        """
        inputs = self.model_inputs(original_image)
        with torch.no_grad():
            return self.model([inputs])[0]

    def model_inputs(self, original_image):
        """The model's input dict for one BGR image (checked by ``check_image``): the image
        converted, resized (and bounded) as ``__call__`` runs it, with the output size."""
        check_image(original_image)
        image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
        height, width = image.shape[:2]
        out_height, out_width = self.output_size(height, width)
        image = self.aug.get_transform(image).apply_image(image)
        net_size = bounded_output_size(*image.shape[:2], self.max_output_pixels)
        if net_size != image.shape[:2]:  # a huge network input (INPUT.MIN_SIZE_TEST 0)
            resize = T.ResizeTransform(*image.shape[:2], *net_size)
            image = resize.apply_image(np.ascontiguousarray(image))
        image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
        return {"image": image, "height": out_height, "width": out_width}
