"""`lesseg predict` at scale: every readable image is predicted when some are not, output-folder problems
are one line, and large images go through sliding windows whose result matches whole-image inference."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lesseg.api import load_run
from lesseg.cli import main
from lesseg.data.classes import ClassInfo
from lesseg.predict import PredictionErrors, Predictor, sliding_bands, window_starts
from tiny_data import make_predicting_run, rgb


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_predicting_run(tmp_path_factory.mktemp("r") / "run")


def photos(folder, n=3, truncated=1):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rgb(24, 32, i)).save(folder / f"good{i}.png")
    for i in range(truncated):
        path = folder / f"broken{i}.jpg"
        Image.fromarray(rgb(24, 32, 9)).save(path)
        path.write_bytes(path.read_bytes()[:200])
    return folder


def test_good_images_are_predicted_when_one_is_broken(tmp_path, run, capsys):
    folder = photos(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(folder), str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("good*.png")) == [
        "good0.png", "good0_overlay.png", "good1.png", "good1_overlay.png", "good2.png", "good2_overlay.png",
    ]  # fmt: skip
    lines = [ln for ln in captured.err.strip().splitlines() if not ln.startswith("predict: ")]  # progress
    assert lines[0].startswith("lesseg: skipped: ") and "missing.png: no such file or folder" in lines[0]
    assert lines[1].startswith("lesseg: skipped: ") and "broken0.jpg: cannot read image" in lines[1]
    assert lines[2] == "lesseg: error: 2 image(s) could not be predicted (listed above)" and len(lines) == 3
    assert "3 masks" in captured.out


def test_stop_on_error_stops_at_the_first(tmp_path, run, capsys):
    folder = photos(tmp_path / "in", n=0)
    Image.fromarray(rgb(24, 32, 0)).save(folder / "zz_good.png")  # after the broken one
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "out"), "--stop-on-error"]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("predict: ")]
    assert len(err) == 1 and "broken0.jpg: cannot read image" in err[0]
    assert not (tmp_path / "out" / "zz_good.png").exists()


def test_api_lists_failures_after_writing_the_rest(tmp_path, run):
    predictor = load_run(run, device="cpu")
    with pytest.raises(PredictionErrors, match=r"1 of 3 images could not be predicted") as e:
        predictor.predict_files([photos(tmp_path / "in", n=2)], tmp_path / "out")
    assert len(e.value.written) == 2 and all(p.is_file() for p in e.value.written)


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_bad_output_folder_is_one_line(tmp_path, run, capsys, where):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "sub"
    assert main(["predict", str(run), str(photos(tmp_path / "in", truncated=0)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lesseg: error: {out}: "), err


# ---------------------------------------------------------------------------------------- sliding windows


def test_window_starts_cover_the_side_and_end_flush():
    assert window_starts(100, 128, 96) == [0]
    assert window_starts(128, 128, 96) == [0]
    starts = window_starts(1000, 128, 96)
    assert starts[0] == 0 and starts[-1] == 1000 - 128
    assert all(0 < b - a <= 96 for a, b in zip(starts, starts[1:]))


class _Pointwise(nn.Module):
    """A 1x1 convolution: each pixel's logits depend on that pixel alone, so sliding windows and the whole
    image must agree. Records the largest input it was given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 1)
        self.largest = 0

    def forward(self, x):
        self.largest = max(self.largest, x.shape[-2] * x.shape[-1])
        return {"logits": self.conv(x)}


@pytest.mark.parametrize("flip", [False, True])
def test_sliding_windows_equal_the_whole_image_for_a_pointwise_net(flip):
    image = rgb(70, 101, 3)
    classes = ClassInfo(tuple("abcde"))
    whole = Predictor(_Pointwise(), classes, flip=flip, device="cpu", slide_above=None)
    slid = Predictor(_Pointwise(), classes, flip=flip, device="cpu", slide_above=0, window=32, stride=20)
    assert slid.slides(image) and not whole.slides(image)
    torch.testing.assert_close(slid.probabilities(image), whole.probabilities(image), atol=1e-6, rtol=1e-5)
    np.testing.assert_array_equal(slid.predict(image), whole.predict(image))
    assert slid.model.largest == 32 * 32  # the network never saw more than a window
    assert whole.model.largest == 70 * 101


def test_bands_cover_every_row_once_and_average_overlaps():
    class Ones(nn.Module):
        def forward(self, x):
            return {"logits": torch.zeros(len(x), 2, *x.shape[-2:])}

    image = rgb(50, 40, 0)
    bands = list(sliding_bands(Ones(), image, window=16, stride=10))
    assert bands[0][0] == 0 and bands[-1][1] == 50
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))  # contiguous, no row twice
    assert max(b[2].shape[1] for b in bands) <= 16  # at most a window of rows held
    probs = torch.cat([b[2] for b in bands], dim=1)
    torch.testing.assert_close(probs, torch.full((2, 50, 40), 0.5))  # averaged, not summed


def test_slide_threshold_is_in_megapixels(run):
    predictor = load_run(run, device="cpu", slide_above=0.001)  # 1000 pixels
    assert predictor.slides(rgb(40, 30, 0)) and not predictor.slides(rgb(20, 30, 0))
    assert load_run(run, device="cpu").slide_above == 4.0  # the config's default
