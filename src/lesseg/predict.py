"""Prediction with a trained network and its test-time protocol: class-index masks for new images.

A method hands its trained network over as a :class:`Predictor` (``Method.inference_model``); a finished
run's is ``lesseg.api.load_run(run_dir)``.

Example:
    >>> from lesseg.api import load_run
    >>> predictor = load_run("runs/demo")                      # doctest: +SKIP
    >>> mask = predictor.predict(image)                        # HxW int64 class indices  # doctest: +SKIP
    >>> predictor.predict_files(["a.jpg", "photos/"], "out/")  # masks + overlays  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lesseg.data.classes import ClassInfo
from lesseg.data.imageio import color_palette, load_image, save_label_png
from lesseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lesseg.engine.distributed import resolve_device
from lesseg.errors import ConfigError, DataError
from lesseg.progress import track

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


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Where windows start along one side (MMSegmentation's ``slide`` mode): every ``stride`` pixels, the
    last one flush with the end; one window when ``length <= window``."""
    if length <= window:
        return [0]
    count = -(-(length - window) // stride) + 1
    return [min(i * stride, length - window) for i in range(count)]


@torch.inference_mode()
def sliding_bands(model, image: np.ndarray, window: int, stride: int, scales=(1.0,), flip: bool = False,
                  device: torch.device | str = "cpu") -> Iterator[tuple[int, int, torch.Tensor]]:  # fmt: skip
    """Sliding-window class probabilities of an HxWx3 uint8 image, one band of rows at a time.

    Windows of ``window`` x ``window`` pixels (smaller images: the image) every ``stride`` pixels each get
    the test-time passes of :func:`predict_logits` (``scales`` of the window, flips); where windows overlap
    their probabilities are averaged. A band of rows is yielded as ``(top, bottom, probs[C, rows, W])`` once
    no later window reaches it, so the memory held is one row of windows (``C x window x W``), whatever the
    image's height; the network sees one window at a time.
    """
    height, width = image.shape[:2]
    wh, ww = min(window, height), min(window, width)
    ys, xs = window_starts(height, wh, stride), window_starts(width, ww, stride)
    passes = len(scales) * (2 if flip else 1)
    carry: tuple[torch.Tensor, torch.Tensor] | None = None  # rows of the last band that are not final
    for i, y in enumerate(ys):
        acc, count = None, torch.zeros(wh, width)
        for x in xs:
            crop = normalize_image(image[y : y + wh, x : x + ww]).to(device)
            probs = predict_logits(model, crop, scales, flip)[0].float().cpu()
            if acc is None:
                acc = torch.zeros(probs.shape[0], wh, width)
            acc[:, :, x : x + ww] += probs
            count[:, x : x + ww] += passes
        if carry is not None:
            acc[:, : carry[0].shape[1]] += carry[0]
            count[: carry[1].shape[0]] += carry[1]
        done = (ys[i + 1] if i + 1 < len(ys) else height) - y
        yield y, y + done, acc[:, :done] / count[:done]
        carry = (acc[:, done:], count[done:])


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """An HxWx3 uint8 RGB array as a [1,3,H,W] float tensor with the ImageNet statistics."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return ((x - mean) / std)[None]


def list_images(paths: Iterable[str | Path], problems: list[str] | None = None) -> list[Path]:
    """Image files among ``paths``; a folder contributes its images (sorted, not recursive). A path that
    does not exist, or a folder without images, raises :class:`DataError`, or with ``problems`` given is
    added to it."""
    out: list[Path] = []
    for p in map(Path, paths):
        problem = None
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problem = f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
            out += found
        elif p.is_file():
            out.append(p)
        else:
            problem = f"{p}: no such file or folder"
        if problem is not None:
            if problems is None:
                raise DataError(problem)
            problems.append(problem)
    return out


def prepare_output_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and make sure files can be written there; else a one-line
    :class:`DataError` naming it."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: the output folder is a file; give a folder (created when missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise DataError(f"{out_dir}: cannot write into the output folder ({e.strerror or e})") from None
    return out_dir


class PredictionErrors(DataError):
    """Some images could not be predicted; the others were. ``failed``: one line per image,
    ``written``: the masks that were written."""

    def __init__(self, failed: list[str], written: list[Path], out_dir: Path):
        self.failed, self.written = failed, written
        super().__init__(
            f"{len(failed)} of {len(failed) + len(written)} images could not be predicted "
            f"(first: {failed[0]}); the other {len(written)} are in {out_dir}"
        )


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
        slide_above: images with more than this many megapixels are predicted by sliding windows
            (:func:`sliding_bands`), so memory is bounded by the window instead of growing with the image;
            ``None``: never, ``0``: always. Smaller images are one forward pass per test-time pass.
        window, stride: the sliding windows' side and step in pixels (``stride <= window``).
    """

    def __init__(self, model: torch.nn.Module, classes: ClassInfo, scales: Sequence[float] = (1.0,),
                 flip: bool = False, device: str = "auto", crf_iterations: int = 0,
                 slide_above: float | None = 4.0, window: int = 1024, stride: int = 768):  # fmt: skip
        if isinstance(crf_iterations, bool) or not isinstance(crf_iterations, int) or crf_iterations < 0:
            raise ValueError(f"crf_iterations must be an integer >= 0, got {crf_iterations!r}")
        if not 1 <= stride <= window:
            raise ValueError(
                f"sliding windows need 1 <= stride <= window, got stride {stride}, window {window}"
            )
        if slide_above is not None and slide_above < 0:
            raise ValueError(f"slide_above must be >= 0 megapixels or None, got {slide_above!r}")
        self.slide_above, self.window, self.stride = slide_above, window, stride
        if crf_iterations:
            from lesseg.refine.crf import CrfUnavailableError, crf_unavailable_reason

            why = crf_unavailable_reason()
            if why:
                raise CrfUnavailableError(why)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes, self.scales, self.flip = classes, tuple(scales), flip
        self.crf_iterations = crf_iterations

    def slides(self, image: np.ndarray) -> bool:
        """Whether ``image`` is predicted by sliding windows (more than ``slide_above`` megapixels)."""
        return self.slide_above is not None and image.shape[0] * image.shape[1] > self.slide_above * 1e6

    def _check(self, image: np.ndarray) -> None:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"expected an HxWx3 RGB image array, got {got}")

    def _bands(self, image: np.ndarray) -> Iterator[tuple[int, int, torch.Tensor]]:
        return sliding_bands(self.model, image, self.window, self.stride, self.scales, self.flip, self.device)

    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """[C,H,W] class scores of one HxWx3 uint8 RGB image (averaged over the test-time passes)."""
        self._check(image)
        if self.slides(image):
            return torch.cat([probs for _, _, probs in self._bands(image)], dim=1)
        x = normalize_image(image).to(self.device)
        n = len(self.scales) * (2 if self.flip else 1)
        return (predict_logits(self.model, x, self.scales, self.flip)[0] / n).cpu()

    def predict(self, image: np.ndarray) -> np.ndarray:
        """HxW int64 class indices of one HxWx3 uint8 RGB image (after the dense CRF if configured).
        Above ``slide_above`` megapixels without a CRF, only one band of windows' scores is held at a time."""
        if self.crf_iterations:
            from lesseg.refine.crf import dense_crf

            probs = torch.softmax(self.probabilities(image).float(), dim=0).numpy()
            return dense_crf(image, probs, iterations=self.crf_iterations).argmax(0).astype(np.int64)
        self._check(image)
        if self.slides(image):
            out = np.empty(image.shape[:2], np.int64)
            for top, bottom, probs in self._bands(image):
                out[top:bottom] = probs.argmax(0).numpy()
            return out
        return self.probabilities(image).argmax(0).numpy().astype(np.int64)

    def predict_files(self, paths: Iterable[str | Path], out_dir: str | Path, alpha: float = 0.5,
                      stop_on_error: bool = False, on_error: Callable[[str], None] | None = None,
                      ) -> list[Path]:  # fmt: skip
        """For each image (files, or folders of images): ``<stem>.png``, a palette PNG whose pixel values are
        class indices, and ``<stem>_overlay.png``, the colours over the image with a legend of the classes
        it shows below it. Returns the mask paths.

        An image that cannot be read (or a path that does not exist) does not stop the others: each is
        passed to ``on_error`` as one line, and at the end :class:`PredictionErrors` lists them (after every
        readable image was written). ``stop_on_error`` raises at the first instead. A folder that cannot
        be written is one :class:`DataError` before any image is read."""
        from PIL import Image

        from lesseg.io import atomic_write
        from lesseg.report.visualize import overlay, with_legend

        out_dir = prepare_output_dir(out_dir)
        failed: list[str] = []

        def fail(message: str) -> None:
            if stop_on_error:
                raise DataError(message)
            failed.append(message)
            if on_error is not None:
                on_error(message)

        listed: list[str] = []
        images = list_images(paths, listed)
        for message in listed:
            fail(message)
        stems = [p.stem for p in images]
        if len(set(stems)) != len(stems):
            dup = sorted({s for s in stems if stems.count(s) > 1})
            raise DataError(f"several input images share the name(s) {dup[:5]}: their outputs would collide")
        palette = color_palette(self.classes.num_classes, self.classes.ignore_index)
        written = []
        for path in track(images, "predict"):
            try:
                image = load_image(path)
            except DataError as e:
                fail(str(e))
                continue
            mask = self.predict(image)
            ignore = self.classes.ignore_index
            blended = overlay(image, mask, alpha, palette, ignore)
            blended = Image.fromarray(with_legend(blended, mask, self.classes.classes, palette, ignore))
            try:
                save_label_png(out_dir / f"{path.stem}.png", mask, palette)
                atomic_write(
                    out_dir / f"{path.stem}_overlay.png", lambda f, im=blended: im.save(f, format="PNG")
                )
            except OSError as e:
                raise DataError(
                    f"{out_dir}: cannot write the prediction of {path.name} ({e.strerror or e})"
                ) from None
            written.append(out_dir / f"{path.stem}.png")
        if failed:
            raise PredictionErrors(failed, written, out_dir)
        return written


def protocol_of(seg, **overrides) -> dict:
    """The test-time settings of a ``segmenter`` config section, as :class:`Predictor` arguments, with the
    ``overrides`` that are not None in their place (``scales``, ``flip``, ``crf_iterations``, ...)."""
    if seg.test_stride > seg.test_window:
        raise ConfigError(f"segmenter.test_stride={seg.test_stride} must not exceed "
                          f"segmenter.test_window={seg.test_window}")  # fmt: skip
    own = {"scales": tuple(seg.test_scales), "flip": seg.test_flip, "crf_iterations": seg.test_crf_iterations,
           "slide_above": seg.test_slide_above, "window": seg.test_window, "stride": seg.test_stride}  # fmt: skip
    return {**own, **{k: v for k, v in overrides.items() if v is not None}}
