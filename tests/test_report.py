import base64
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from chromium import find_chromium, run_chromium
from lesseg.report import (
    GalleryRow,
    colorize,
    curves_from_log,
    data_uri,
    flatten_metrics,
    format_metric,
    heatmap,
    overlay,
    to_png_bytes,
    write_report,
)
from lesseg.report.visualize import IGNORE_COLOR

PNG_RE = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
MARKERS = [
    (255, 0, 255),
    (0, 255, 255),
    (0, 255, 0),
]  # one solid panel per gallery row, found in the screenshot
H, W = 32, 48

METRICS = {
    "cams": {
        "miou": 0.43214,
        "pixel_acc": 0.81234,
        "coverage": 0.675,
        "per_class_iou": {"background": 0.8, "<b>": 0.31, "cat": None, "dog": 0.12},
        "multi_tag": {"miou": 0.38765, "pixel_acc": 0.7},
    },
    "segmenter": {
        "miou": 0.55549,
        "pixel_acc": 0.9012,
        "num_pixels": 123456,
        "per_class_iou": {"background": 0.9, "<b>": 0.5, "cat": None, "dog": 0.26},
    },
    "references": {"random_among_tags": {"miou": 0.22222}},
}
CLASS_NAMES = ["background", "<b>", "cat", "dog"]


def _gallery(rng):
    rows = []
    for i, marker in enumerate(MARKERS):
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        mask = rng.integers(0, 4, (H, W))
        mask[:4] = 255
        cam = rng.random((H // 4, W // 4))
        rows.append(
            GalleryRow(
                id=f"img_{i:03d}",
                panels=[
                    ("image", image),
                    ("CAM", heatmap(image, cam)),
                    ("pseudo-label", colorize(mask)),
                    ("prediction", overlay(image, mask)),
                    ("marker", np.broadcast_to(np.array(marker, np.uint8), (H, W, 3))),
                ],
            )
        )
    return rows


def _log(run_dir):
    lines = [
        {"stage": "train", "event": "resumed", "step": 0, "epoch": 0},
        *[
            {
                "stage": "train",
                "step": s,
                "epoch": s // 10,
                "loss": 2.0 / (1 + s),
                "cls_loss": 1.0 / (1 + s),
                "lr": 0.01 * (1 - s / 50),
                "images_per_s": 30.0 + s % 3,
                "note": "x",
                "amp": True,
            }
            for s in range(0, 50, 2)
        ],
        {"stage": "train", "event": "skipped", "step": 7, "files": ["a.png"]},
    ]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"stage": "train", "step": 51, "lo'  # cut short
    (run_dir / "log.jsonl").write_text(text)
    return run_dir / "log.jsonl"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    curves = curves_from_log(_log(run_dir))
    notes = ["random init", "references use masks: diagnostics, not baselines"]
    path = write_report(
        run_dir, "CAM on <synthetic>", METRICS, _gallery(np.random.default_rng(0)), curves, notes, CLASS_NAMES
    )
    return path


def test_visualize_colours_ignore_blends_and_encodes():
    mask = np.array([[0, 1], [2, 255]])
    rgb = colorize(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [128, 0, 0]
    assert rgb[1, 1].tolist() == list(IGNORE_COLOR)
    with pytest.raises(ValueError):
        colorize(np.array([[0, 300]]), palette=np.zeros((4, 3), np.uint8))
    image = np.full((2, 2, 3), 100, np.uint8)
    assert np.array_equal(overlay(image, mask, alpha=0.0), image)
    assert overlay(image, mask, alpha=1.0)[0, 1].tolist() == [128, 0, 0]
    assert overlay(image, mask, alpha=1.0)[1, 1].tolist() == [100, 100, 100]  # ignore: the bare image
    hm = heatmap(np.zeros((8, 12, 3), np.uint8), np.linspace(0, 1, 12)[None].repeat(4, 0)[:, ::2])
    assert hm.shape == (8, 12, 3)
    ramp = heatmap(None, np.array([[0.0, 0.5, 1.0]]))[0].astype(int)
    assert ramp.sum(1).tolist() == sorted(ramp.sum(1).tolist())  # brightness rises with the value
    png = to_png_bytes(hm)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), hm)
    assert data_uri(hm) == "data:image/png;base64," + base64.b64encode(png).decode()


def test_curves_from_log_skips_events_and_non_numeric_fields(tmp_path):
    curves = curves_from_log(_log(tmp_path))
    assert set(curves) == {"loss", "cls_loss", "lr", "images_per_s"}
    assert [s for s, _ in curves["loss"]] == list(range(0, 50, 2))
    assert curves["loss"][1] == (2, pytest.approx(2.0 / 3))
    with (tmp_path / "log.jsonl").open("a") as f:
        f.write("\n" + json.dumps({"stage": "segmenter", "step": 3, "loss": 0.5}) + "\n")
    assert curves_from_log(tmp_path / "log.jsonl")["segmenter / loss"] == [(3, 0.5)]


def test_flatten_metrics_names_nested_stages():
    paths = [r["path"] for r in flatten_metrics(METRICS)]
    assert paths == [("cams",), ("cams", "multi_tag"), ("segmenter",), ("references", "random_among_tags")]
    assert format_metric("miou", 0.43214) == "43.2" and format_metric("num_pixels", 123456) == "123,456"


def test_report_is_self_contained_and_shows_the_numbers(report):
    page = report.read_text()
    assert report.name == "report.html" and not list(report.parent.glob(".report.html.*"))
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    for attr in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attr.startswith(("data:image/png;base64,", "#")), attr
    payloads = PNG_RE.findall(page)
    assert len(payloads) == len(MARKERS) * 5
    for p in payloads:
        with Image.open(io.BytesIO(base64.b64decode(p, validate=True))) as im:
            im.load()
            assert im.size == (W, H) and im.mode == "RGB"
    table = page[page.index('<table class="metrics">') : page.index("</table>")]
    for value in ("43.2", "38.8", "55.5", "22.2", "81.2", "67.5", "123,456"):
        assert f">{value}</td>" in table, value
    assert "cams / </span>multi_tag" in table and "references / </span>random_among_tags" in table
    assert "&lt;b&gt;" in page and "<b>" not in page and "&lt;synthetic&gt;" in page
    assert page.count(">n/a</text>") == 2  # the absent class, in both per-class charts
    assert "random init" in page and "diagnostics, not baselines" in page
    for name in ("loss", "cls_loss", "lr", "images_per_s"):
        assert f"<figcaption>{name}<" in page


def test_report_renders_in_headless_chromium(report, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    url = report.resolve().as_uri()
    shot = tmp_path / "report.png"
    run_chromium(binary, tmp_path, "--window-size=1280,2000", f"--screenshot={shot}", url)
    if os.environ.get("LESSEG_REPORT_SCREENSHOT"):  # keep it to look at
        shutil.copy(shot, os.environ["LESSEG_REPORT_SCREENSHOT"])
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB")).astype(np.int64)
    assert pixels.shape == (2000, 1280, 3)
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1]))) > 100
    for marker in MARKERS:  # every gallery row's pictures decoded and drew (each marker is ~240x160 px)
        near = np.abs(pixels - np.array(marker)).max(axis=2) <= 12
        assert near.sum() > 20000, (marker, int(near.sum()))

    dom = run_chromium(binary, tmp_path, "--dump-dom", url)
    assert '<table class="metrics">' in dom and ">43.2</td>" in dom and ">55.5</td>" in dom
    imgs = re.findall(r"<img\b[^>]*>", dom)
    assert len(imgs) == len(MARKERS) * 5
    assert all('src="data:image/png;base64,' in tag for tag in imgs)


def test_legend_shows_the_classes_in_the_mask():
    from lesseg.data.imageio import color_palette
    from lesseg.report.visualize import with_legend

    mask = np.zeros((40, 300), np.int64)
    mask[:, 150:] = 2
    palette = color_palette(3)
    out = with_legend(np.zeros((40, 300, 3), np.uint8), mask, ["sky", "road", "car"], palette)
    assert out.shape[1] == 300 and out.shape[0] > 40
    strip = out[40:].reshape(-1, 3)
    colours = {tuple(c) for c in strip}
    assert tuple(palette[2]) in colours and tuple(palette[0]) in colours  # the swatches of sky and car
    assert tuple(palette[1]) not in colours  # road is not in the mask


def test_a_chart_of_several_series_and_report_figures(tmp_path):
    from lesseg.report.charts import SERIES, line_chart_svg

    svg = line_chart_svg({"supervised only": [(0.125, 0.3), (0.5, 0.5)], "PseudoSeg": [(0.125, 0.4), (0.5, 0.55)]},
                         x_label="labeled fraction")  # fmt: skip
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4
    assert ">supervised only</text>" in svg and ">PseudoSeg</text>" in svg
    assert SERIES[0] in svg and SERIES[1] in svg and "labeled fraction" in svg
    page = write_report(
        tmp_path, "t", {"x": {"miou": 0.5}}, [], figures=[("label efficiency", svg)]
    ).read_text()
    assert '<section id="figures">' in page and "<figcaption>label efficiency</figcaption>" in page
    assert '<a href="#figures">' in page
