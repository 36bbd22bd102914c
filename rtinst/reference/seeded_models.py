"""Our model of a config with a reference checkpoint's name-seeded weights (the reference's
names are ours, so they load as they are): what the golden tests and the latency tool compare
with the reference's outputs (``tools/reference/``)."""
from typing import Optional

import torch

from detectron2.modeling import build_model

from ..engine import load_config
from .seeded_weights import DETECTRON2_RULE, seeded_state_dict, state_dict_digest

__all__ = ["build_seeded"]


def build_seeded(config_file: str, weights_sha256: Optional[str] = None,
                 score_threshold: Optional[float] = None) -> torch.nn.Module:
    """The eval-mode CPU model of ``config_file`` with ``DETECTRON2_RULE`` weights on its own
    parameter names (and ``MODEL.FCOS.INFERENCE_TH_TEST`` = ``score_threshold`` if given).

    ``weights_sha256``: the reference's digest of the same weights (sorted by name); a mismatch
    (another rule, other names or shapes) raises ``ValueError``.
    """
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "DATASETS.TRAIN", "()",
            "DATASETS.TEST", "()"]
    if score_threshold is not None:
        opts += ["MODEL.FCOS.INFERENCE_TH_TEST", str(score_threshold)]
    torch.manual_seed(0)
    model = build_model(load_config(config_file, opts))
    spec = [(name, tuple(t.shape), str(t.dtype).replace("torch.", ""))
            for name, t in model.state_dict().items()]
    state = seeded_state_dict(spec, DETECTRON2_RULE)
    digest = state_dict_digest(dict(sorted(state.items())))
    if weights_sha256 is not None and digest != weights_sha256:
        raise ValueError(f"{config_file}: the seeded weights' digest {digest} is not the "
                         f"reference's {weights_sha256}")
    model.load_state_dict(state, strict=True)
    return model.eval()
