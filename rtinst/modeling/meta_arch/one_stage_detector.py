"""A stand-alone one-stage detector: backbone + a dense proposal generator (FCOS) whose
detections are the final output (FCOS Sec. 3 used without a second stage)."""
from typing import Dict, List

from detectron2.modeling import META_ARCH_REGISTRY, ProposalNetwork
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import ImageList

from .preprocessing import normalised_batch

__all__ = ["OneStageDetector", "postprocess_detections"]


@META_ARCH_REGISTRY.register()
class OneStageDetector(ProposalNetwork):
    """Detectron2's ``ProposalNetwork`` returning ``{"instances": ...}`` per image, so that
    ``DefaultPredictor``, ``COCOEvaluator`` and ``Visualizer`` work unchanged."""

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalises the images and pads them to the backbone's size divisibility."""
        return normalised_batch(batched_inputs, self.pixel_mean, self.pixel_std,
                                self.backbone.size_divisibility)

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: Detectron2 dataset-mapper dicts ("image" CHW tensor, optional
                "instances" in training, optional original "height"/"width").

        Returns:
            training: dict of losses; inference: per image {"instances": Instances} rescaled to
            the original "height"/"width" (the input size when absent).
        """
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if self.training:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            _, losses = self.proposal_generator(images, features, gt_instances)
            return losses

        results, _ = self.proposal_generator(images, features)
        return postprocess_detections(results, batched_inputs, images.image_sizes)

    export_output_names = ("boxes", "scores", "classes")

    def export_outputs(self, images, image_size):
        """The detections of one normalised (1, 3, H, W) canvas whose top-left ``image_size``
        ((2,) tensor) holds the picture, before rescaling (``rtinst.export.AnySizePipeline``)."""
        batch = ImageList(images, [(image_size[0], image_size[1])])
        detections = self.proposal_generator(batch, self.backbone(images))[0][0]
        return detections.pred_boxes.tensor, detections.scores, detections.pred_classes


def postprocess_detections(results, batched_inputs, image_sizes, mask_threshold=0.5):
    """Per image ``{"instances": ...}`` rescaled from the network input to the original
    "height"/"width" (the input size when absent); R x R ``pred_masks`` probabilities are pasted
    into the image and thresholded at ``mask_threshold``."""
    processed = []
    for instances, inputs, image_size in zip(results, batched_inputs, image_sizes):
        height = inputs.get("height", image_size[0])
        width = inputs.get("width", image_size[1])
        processed.append(
            {"instances": detector_postprocess(instances, height, width, mask_threshold)}
        )
    return processed
