"""Prediction with a finished run's segmenter: class-index masks for new images.

Example:
    >>> from lesseg.predict import Predictor
    >>> predictor = Predictor.from_run("runs/demo")            # doctest: +SKIP
    >>> mask = predictor.predict(image)                        # HxW int64 class indices  # doctest: +SKIP
    >>> predictor.predict_files(["a.jpg", "photos/"], "out/")  # masks + overlays  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lesseg.data.classes import ClassInfo
from lesseg.data.imageio import color_palette, load_image, save_label_png
from lesseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lesseg.engine.checkpoint import load_checkpoint
from lesseg.engine.distributed import resolve_device
from lesseg.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@torch.inference_mode()
def predict_logits(model, image: torch.Tensor, scales=(1.0,), flip: bool = False) -> torch.Tensor:
    """Class probabilities [N,C,H,W] of normalised images, summed over scales (and flips) at the input size.

    The papers' test-time protocol is scales (0.5, 0.75, 1.0, 1.25, 1.5) with flips; (1.0,) without flip
    is a single forward pass."""
    size = image.shape[-2:]
    total = 0
    for s in scales:
        x = image if s == 1.0 else F.interpolate(image, scale_factor=s, mode="bilinear", align_corners=False)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        out = F.interpolate(model(batch)["logits"].float(), size=size, mode="bilinear", align_corners=False)
        prob = out.softmax(1)
        total = total + (prob[: len(x)] + prob[len(x) :].flip(-1) if flip else prob)
    return total


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """An HxWx3 uint8 RGB array as a [1,3,H,W] float tensor with the ImageNet statistics."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return ((x - mean) / std)[None]


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among ``paths``; a folder contributes its images (sorted, not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return out


class Predictor:
    """A trained segmenter with its classes and test-time protocol.

    Args:
        model: a segmentation model returning ``{"logits": [N,C,h,w]}``.
        classes: the dataset's class metadata (names, background, ignore index).
        scales: test-time scales; flip: add horizontally flipped passes.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        crf_iterations: mean-field iterations of a dense CRF on the softmax of the summed logits before the
            argmax (Puzzle-CAM tests with 10); 0 for none. Needs the ``crf`` extra
            (:class:`~lesseg.refine.crf.CrfUnavailableError` names it when missing).
    """

    def __init__(self, model: torch.nn.Module, classes: ClassInfo, scales: Sequence[float] = (1.0,),
                 flip: bool = False, device: str = "auto", crf_iterations: int = 0):  # fmt: skip
        if isinstance(crf_iterations, bool) or not isinstance(crf_iterations, int) or crf_iterations < 0:
            raise ValueError(f"crf_iterations must be an integer >= 0, got {crf_iterations!r}")
        if crf_iterations:
            from lesseg.refine.crf import CrfUnavailableError, crf_unavailable_reason

            why = crf_unavailable_reason()
            if why:
                raise CrfUnavailableError(why)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes, self.scales, self.flip = classes, tuple(scales), flip
        self.crf_iterations = crf_iterations

    @classmethod
    def from_run(cls, run_dir: str | Path, scales: Sequence[float] | None = None, flip: bool | None = None,
                 device: str = "auto", crf_iterations: int | None = None) -> Predictor:  # fmt: skip
        """The segmenter of a finished run (its config's test protocol unless ``scales``, ``flip`` or
        ``crf_iterations`` say)."""
        from lesseg.config import load_config
        from lesseg.stages.segmenter import build_segmenter

        run_dir = Path(run_dir)
        if (run_dir / "checkpoints" / "clusters.pt").is_file():
            return cls._from_clustering_run(run_dir, scales, flip, device)
        weights = run_dir / "checkpoints" / "segmenter_final.pt"
        for needed in (run_dir / "config.yaml", run_dir / "classes.json", weights):
            if not needed.is_file():
                raise ConfigError(
                    f"{run_dir} is not a finished run: {needed.name} is missing (run `lesseg run` to the end)"
                )
        cfg = load_config(run_dir / "config.yaml")
        classes = ClassInfo.load(run_dir / "classes.json")
        cfg.segmenter.model.pretrained, cfg.segmenter.model.weights = False, None  # the run's own weights
        model = build_segmenter(cfg, classes.num_classes)
        model.load_state_dict(load_checkpoint(weights)["model"])
        seg = cfg.segmenter
        crf = seg.test_crf_iterations if crf_iterations is None else crf_iterations
        return cls(model, classes, seg.test_scales if scales is None else scales,
                   seg.test_flip if flip is None else flip, device, crf)  # fmt: skip

    @classmethod
    def _from_clustering_run(cls, run_dir: Path, scales, flip, device) -> Predictor:
        """A PiCIE run: its feature network and evaluation clusters, coloured by their matched class when
        the ``cluster_eval`` stage could match them (val masks), else one colour per cluster."""
        from lesseg.config import load_config
        from lesseg.methods.picie import ClusterSegmenter
        from lesseg.models import create_model

        for needed in ("config.yaml", "classes.json", "checkpoints/features_final.pt"):
            if not (run_dir / needed).is_file():
                raise ConfigError(f"{run_dir} is not a finished run: {needed} is missing")
        cfg = load_config(run_dir / "config.yaml")
        m = cfg.model
        net = create_model(m.name, backbone=m.backbone, output_stride=m.output_stride)
        net.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "features_final.pt")["model"])
        clusters = load_checkpoint(run_dir / "checkpoints" / "clusters.pt")
        classes = ClassInfo.load(run_dir / "classes.json")
        mapping = clusters["cluster_to_class"]
        if mapping is None:
            classes = ClassInfo(tuple(f"cluster {k}" for k in range(len(clusters["centroids"]))))
        model = ClusterSegmenter(net, clusters["centroids"], mapping, classes.num_classes, cfg.data.crop_size)
        return cls(model, classes, scales if scales is not None else (1.0,), bool(flip), device)

    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """[C,H,W] class scores of one HxWx3 uint8 RGB image (averaged over the test-time passes)."""
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"expected an HxWx3 RGB image array, got {got}")
        x = normalize_image(image).to(self.device)
        n = len(self.scales) * (2 if self.flip else 1)
        return (predict_logits(self.model, x, self.scales, self.flip)[0] / n).cpu()

    def predict(self, image: np.ndarray) -> np.ndarray:
        """HxW int64 class indices of one HxWx3 uint8 RGB image (after the dense CRF if configured)."""
        scores = self.probabilities(image)
        if self.crf_iterations:
            from lesseg.refine.crf import dense_crf

            probs = torch.softmax(scores.float(), dim=0).numpy()
            return dense_crf(image, probs, iterations=self.crf_iterations).argmax(0).astype(np.int64)
        return scores.argmax(0).numpy().astype(np.int64)

    def predict_files(
        self, paths: Iterable[str | Path], out_dir: str | Path, alpha: float = 0.5
    ) -> list[Path]:
        """For each image (files, or folders of images): ``<stem>.png``, a palette PNG whose pixel values are
        class indices, and ``<stem>_overlay.png``, the colours over the image. Returns the mask paths."""
        from PIL import Image

        from lesseg.io import atomic_write
        from lesseg.report.visualize import overlay

        out_dir = Path(out_dir)
        images = list_images(paths)
        stems = [p.stem for p in images]
        if len(set(stems)) != len(stems):
            dup = sorted({s for s in stems if stems.count(s) > 1})
            raise DataError(f"several input images share the name(s) {dup[:5]}: their outputs would collide")
        palette = color_palette(self.classes.num_classes, self.classes.ignore_index)
        written = []
        for path in images:
            image = load_image(path)
            mask = self.predict(image)
            save_label_png(out_dir / f"{path.stem}.png", mask, palette)
            blended = Image.fromarray(overlay(image, mask, alpha, palette, self.classes.ignore_index))
            atomic_write(out_dir / f"{path.stem}_overlay.png", lambda f, im=blended: im.save(f, format="PNG"))
            written.append(out_dir / f"{path.stem}.png")
        return written
