"""What reference-equivalence checks share: name-seeded weights (``seeded_weights.py``) and seeded
pictures and ground truth (``seeded_inputs.py``). Both modules import only torch and numpy, so the
reference runners (``tools/reference/``, ``projects/YOLACT/tools/``), which must not register
rtinst's Detectron2 components beside the reference's, load them by file path."""
