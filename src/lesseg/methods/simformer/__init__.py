"""SimFormer (Chen et al., NeurIPS 2022): weak-shot segmentation, base classes with masks and novel classes
with tags only, on MaskFormer (:mod:`lesseg.models.maskformer`). ``losses``: the set losses and matching."""
