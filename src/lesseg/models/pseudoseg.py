"""The network of PseudoSeg (Zou et al., "PseudoSeg: Designing Pseudo Labels for Semantic Segmentation",
ICLR 2021): DeepLabv3+ with two more heads on its encoder.

* A classifier on the deepest features (global average pool, linear; sigmoid BCE in the method), whose
  Grad-CAM (Selvaraju et al. 2017) localises the image's classes: :func:`grad_cam`.
* The self-attention Grad-CAM head (SGC, :class:`SelfAttentionGradCAM`): the CAMs propagated by an
  attention over the detached hypercolumn of the two deepest feature levels, then a 1x1 convolution and
  BatchNorm to one logit per class, trained with pixel cross-entropy on the labeled images.

``forward(x)`` predicts like any segmenter (``{"logits"}`` at the input size); ``forward(x, weak=...,
strong=..., ...)`` runs one PseudoSeg training step's passes in a single call (so that under
DistributedDataParallel a step is one forward and one backward) and returns what the losses of
:mod:`lesseg.methods.pseudoseg` need.

Example:
    >>> import torch
    >>> net = PseudoSegNet("resnet18", num_classes=3, background_index=0, output_stride=16)
    >>> net.eval()(torch.randn(1, 3, 64, 64))["logits"].shape
    torch.Size([1, 3, 64, 64])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.models.base import register_model
from lesseg.models.deeplab import DeepLabV3Plus

#: logit added to the attention of padded (and cut-out) keys: the official -1e9, as good as -inf after the
#: softmax without its NaN when a row has no valid key at all
MASKED = -1e9


def grad_cam(features: torch.Tensor, head: nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of every class, gated by ``labels`` and normalised by each map's maximum; no gradient.

    For class c, the weights are the spatial mean of d logit_c / d features and the map is
    ``ReLU(sum_k w_ck F_k)``; multiplied by the image-level label of c (1 or 0), then divided by its spatial
    maximum (as the official code does). With ``head`` a global average pool plus linear layer,
    d logit_c / d F = W_c / (h w) everywhere, so the map is the plain CAM ``W_c . F`` times 1 / (h w) and
    equal to it after the normalisation.

    Args:
        features: ``[N, C, h, w]`` feature maps (detached here).
        head: maps ``[N, C, h, w]`` features to ``[N, K]`` class logits.
        labels: ``[N, K]`` 0/1 gates (the image's tags, or the classifier's own sigmoid >= 0.5).

    Returns:
        ``[N, K, h, w]`` maps in [0, 1].
    """
    f = features.detach().float().requires_grad_(True)
    with torch.enable_grad():
        logits = head(f)
        weights = []
        for c in range(logits.shape[1]):
            (g,) = torch.autograd.grad(logits[:, c].sum(), f, retain_graph=c + 1 < logits.shape[1])
            weights.append(g.mean(dim=(2, 3)))
    w = torch.stack(weights, dim=1)  # [N, K, C]
    cams = F.relu(torch.einsum("nkc,nchw->nkhw", w, f.detach())) * labels.float()[:, :, None, None]
    return cams / cams.amax(dim=(2, 3), keepdim=True).clamp_min(1e-5)


class ClassifierHead(nn.Module):
    """Global average pool then a linear layer: image-level logits from a feature map."""

    def __init__(self, channels: int, num_tags: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_tags)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3)))


class SelfAttentionGradCAM(nn.Module):
    """SGC (the official "att_v2"): CAMs refined by self-attention over detached features.

    key = W_k h and query = W_q h (1x1 convolutions without bias, ``key_dim`` channels) of the hypercolumn
    ``h``; attention ``A = softmax(q^T k / sqrt(key_dim))`` over the valid keys (padded or cut-out pixels
    get :data:`MASKED`); output ``A . CAM + CAM`` (a skip), in [0, 2]. With a background class its channel
    is ``2 - max`` over the object classes' outputs (official). Without one (MSRC-21, CamVid: every class
    is a tag class) there is no such channel: each class has its own CAM and the rest of the image needs
    none. A 1x1 convolution and BatchNorm then give one logit per class.

    Args:
        in_channels: channels of the hypercolumn. num_classes: classes of the segmentation (background
            included). tag_indices: the class of each CAM channel. key_dim: width of key and query (128).
        background_index: the background class, or None.
    """

    def __init__(self, in_channels: int, num_classes: int, tag_indices: tuple[int, ...], key_dim: int = 128,
                 background_index: int | None = None):  # fmt: skip
        super().__init__()
        if len(tag_indices) + (background_index is not None) != num_classes:
            raise ValueError(f"SGC: {len(tag_indices)} CAM classes and background {background_index} do not "
                             f"make {num_classes} classes")  # fmt: skip
        self.key = nn.Conv2d(in_channels, key_dim, 1, bias=False)
        self.query = nn.Conv2d(in_channels, key_dim, 1, bias=False)
        self.classify = nn.Sequential(
            nn.Conv2d(num_classes, num_classes, 1, bias=False), nn.BatchNorm2d(num_classes)
        )
        self.register_buffer("tag_indices", torch.tensor(tag_indices, dtype=torch.long), persistent=False)
        self.num_classes, self.key_dim, self.background_index = num_classes, key_dim, background_index

    def refine(
        self, hypercolumn: torch.Tensor, cams: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[N, num_classes, h, w]`` refined maps (before the 1x1 convolution and BatchNorm).

        Args:
            hypercolumn: ``[N, in_channels, h, w]`` (detached here: SGC does not train the backbone).
            cams: ``[N, K, h, w]`` Grad-CAMs of the tag classes. valid: ``[N, h, w]`` bool, the keys to
                attend to (None: all).
        """
        n, _, h, w = cams.shape
        hc = hypercolumn.detach()
        q = self.query(hc).flatten(2)  # [N, d, hw]
        k = self.key(hc).flatten(2)
        logits = torch.einsum("ndq,ndk->nqk", q, k) / math.sqrt(self.key_dim)
        if valid is not None:
            logits = logits.masked_fill(~valid.flatten(1)[:, None, :], MASKED)
        attention = logits.softmax(dim=-1)
        v = cams.flatten(2)  # [N, K, hw]
        out = (torch.einsum("nqk,nck->ncq", attention, v) + v).view(n, -1, h, w)
        full = out.new_zeros(n, self.num_classes, h, w)
        full[:, self.tag_indices] = out
        if self.background_index is not None:
            full[:, self.background_index] = 2 - out.amax(dim=1)
        return full

    def forward(
        self, hypercolumn: torch.Tensor, cams: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[N, num_classes, h, w]`` SGC logits."""
        return self.classify(self.refine(hypercolumn, cams, valid))


def resize_valid(valid: torch.Tensor, size) -> torch.Tensor:
    """A ``[N, H, W]`` bool map at another resolution (nearest: a cell keeps its centre's value)."""
    return F.interpolate(valid[:, None].float(), size=tuple(size), mode="nearest")[:, 0] > 0.5


@register_model("pseudoseg")
class PseudoSegNet(DeepLabV3Plus):
    """DeepLabv3+ with PseudoSeg's classifier and SGC heads (see the module docstring).

    Args:
        backbone, num_classes, output_stride, norm, weights, pretrained, img_size: as
            :class:`~lesseg.models.DeepLabV3Plus` (official: Xception-65 at output stride 16).
        background_index: the background class, or None (its SGC channel is ``2 - max``).
        key_dim: SGC's key and query width (official 128).

    The classifier has one output per tag class (every class but the background), in class order.
    """

    def __init__(self, backbone: str = "resnet50", num_classes: int = 21, background_index: int | None = 0,
                 output_stride: int = 16, norm: str = "bn", weights: str | None = None, pretrained: bool = False,
                 img_size: int | None = None, key_dim: int = 128):  # fmt: skip
        super().__init__(backbone, num_classes, output_stride, norm, weights=weights, pretrained=pretrained,
                         img_size=img_size)  # fmt: skip
        tags = tuple(c for c in range(num_classes) if c != background_index)
        channels = self.encoder.channels
        self.classifier = ClassifierHead(channels[-1], len(tags))
        self.sgc = SelfAttentionGradCAM(
            channels[-2] + channels[-1], num_classes, tags, key_dim, background_index
        )

    # ---- the pieces ------------------------------------------------------------------------------

    @staticmethod
    def hypercolumn(features: list[torch.Tensor]) -> torch.Tensor:
        """The two deepest levels at the deepest one's resolution (the official hypercolumn of the
        stride-16 end points: ResNet block3 + block4, Xception exit_flow block1 + block2)."""
        deep = features[-1]
        prev = F.interpolate(features[-2], size=deep.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([prev, deep], dim=1)

    def decoder_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Logits at the decoder's resolution (output stride 4)."""
        return self.head(self.decoder(features))

    def sgc_logits(
        self, features: list[torch.Tensor], labels: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """SGC logits at the CAM resolution: Grad-CAMs gated by ``labels``, attention over ``valid``."""
        cams = grad_cam(features[-1], self.classifier, labels)
        return self.sgc(self.hypercolumn(features), cams, resize_valid(valid, cams.shape[-2:]))

    # ---- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, *, labeled_tags: torch.Tensor | None = None,
                labeled_valid: torch.Tensor | None = None, weak: torch.Tensor | None = None,
                strong: torch.Tensor | None = None, weak_valid: torch.Tensor | None = None,
                weak_tags: torch.Tensor | None = None, classify_weak: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
        """Predict ``x`` (only ``x`` given), or run one training step's passes.

        Args:
            x: ``[N, 3, H, W]`` labeled crops. labeled_tags: ``[N, K]`` their tags (from the crops' masks),
                which gate their Grad-CAMs. labeled_valid: ``[N, H, W]`` bool, the non-padded pixels.
            weak, strong: ``[M, 3, H, W]`` two views of the unlabeled crops (same geometry).
            weak_valid: ``[M, H, W]`` bool, pixels neither padded nor cut out of the strong view.
            weak_tags: ``[M, K]`` tags gating the weak view's Grad-CAMs (the weak regime); None: the
                classifier's own prediction (sigmoid >= 0.5) of the weak view.
            classify_weak: also return the weak view's classifier logits from a training-mode pass (the
                weak regime's classification loss).

        The labeled and strong crops (with ``classify_weak`` the weak ones too) go through the encoder as
        one batch in training mode, so BatchNorm normalises them with one set of statistics; the weak view
        goes through again in inference mode for its pseudo-label (:meth:`weak_view_targets`).

        Returns (training): ``logits`` and ``sgc_logits`` of the labeled crops at the input size,
        ``class_logits`` [N, K]; ``strong_logits`` at output stride 4; ``weak_decoder_logits`` and
        ``weak_sgc_logits`` at output stride 4, from the network in inference mode and without gradient;
        ``weak_class_logits`` [M, K] with ``classify_weak``.
        """
        if weak is None:
            return super().forward(x)
        self.check_input(x)
        n, m = x.shape[0], weak.shape[0]
        size = tuple(x.shape[-2:])
        batch = [x, strong, weak] if classify_weak else [x, strong]
        features = self.encoder(torch.cat(batch))
        labeled = [f[:n] for f in features]
        dec = self.decoder_logits([f[: n + m] for f in features])
        out = {
            "logits": F.interpolate(dec[:n], size=size, mode="bilinear", align_corners=False),
            "strong_logits": dec[n:],
            "class_logits": self.classifier(labeled[-1]),
            "sgc_logits": F.interpolate(
                self.sgc_logits(labeled, labeled_tags, labeled_valid),
                size=size,
                mode="bilinear",
                align_corners=False,
            ),  # fmt: skip
        }
        if classify_weak:
            out["weak_class_logits"] = self.classifier(features[-1][n + m :])
        out.update(self.weak_view_targets(weak, weak_valid, weak_tags))
        return out

    def weak_view_targets(self, weak: torch.Tensor, valid: torch.Tensor, tags: torch.Tensor | None) -> dict:
        """The weak view through the network in inference mode (BatchNorm's running statistics), without
        gradient: decoder and SGC logits at output stride 4."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                features = self.encoder(weak)
                decoder = self.decoder_logits(features)
                if tags is None:
                    tags = (torch.sigmoid(self.classifier(features[-1])) >= 0.5).float()
                sgc = self.sgc_logits(features, tags, valid)
                sgc = F.interpolate(sgc, size=decoder.shape[-2:], mode="bilinear", align_corners=False)
        finally:
            self.train(was_training)
        return {"weak_decoder_logits": decoder, "weak_sgc_logits": sgc}
