"""SimFormer (Chen et al., "Weak-shot Semantic Segmentation via Dual Similarity Transfer", NeurIPS 2022):
weak-shot segmentation, base classes with masks and novel classes with tags only, on MaskFormer
(:mod:`lesseg.models.maskformer`; SimNet in :mod:`lesseg.models.simformer`).

- :mod:`.losses`: the set losses, the weak-shot matching, the complementary loss, SimNet's and the
  distillation's losses;
- :mod:`.method`: the method object, its ``method`` config section and its pipeline.
"""

from lesseg.methods.simformer.method import SimFormerConfig, SimFormerMethod, crop_targets

__all__ = ["SimFormerConfig", "SimFormerMethod", "crop_targets"]
