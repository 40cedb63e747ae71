"""Paired transforms: alignment of image, mask and maps, replay at another resolution, inversion, determinism."""

import json
import random

import pytest
import torch
import torch.nn.functional as F

from lesseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    Compose,
    Cutout,
    GaussianBlur,
    Normalize,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomRescale,
    RandomResizedCrop,
    invert,
    invert_batch,
    output_size,
    replay,
    replay_batch,
    seeded_rng,
    valid_region,
)


def position_sample(h: int = 48, w: int = 64) -> dict:
    """An image whose pixels encode their own position (R = 5y, G = 4x, B = 255) and a mask computed from
    it, so after any geometric transform the mask must still equal that function of the image."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([ys * 5, xs * 4, torch.full_like(ys, 255)]).to(torch.uint8)
    return {"image": image, "mask": mask_of(image), "ids": mask_of(image)[None].clone()}


def mask_of(image: torch.Tensor) -> torch.Tensor:
    y, x = image[0].long() // 5, image[1].long() // 4
    return (y * 7 + x) % 200


def coords(h: int, w: int) -> torch.Tensor:
    """A float map [2, h, w]: the (y, x) of each pixel centre."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([ys, xs]).float()


GEOMETRIC = {
    "rescale_long_up": [RandomRescale(long_side=(80, 100), interpolation="nearest")],
    "rescale_short_down": [RandomRescale(short_side=(20, 30), interpolation="nearest")],
    "rescale_scale": [RandomRescale(scale=(0.5, 2.0), interpolation="nearest")],
    "crop": [RandomCrop(32)],
    "crop_pad": [RandomCrop((80, 96), fill=0)],
    "crop_pad_one_side": [RandomCrop((32, 100))],
    "resized_crop": [RandomResizedCrop(40, scale=(0.5, 1.0), interpolation="nearest")],
    "flip": [RandomHorizontalFlip(1.0)],
    "compose": [
        RandomRescale(scale=(0.5, 1.5), interpolation="nearest"),
        RandomCrop(56),
        RandomResizedCrop((40, 30), interpolation="nearest"),
        RandomHorizontalFlip(),
    ],
}


@pytest.mark.parametrize("name", list(GEOMETRIC))
def test_mask_and_maps_stay_aligned_with_the_image(name):
    t = Compose(GEOMETRIC[name])
    for index in range(6):
        out, params = t(position_sample(), seeded_rng(0, 0, index))
        image, mask, ids = out["image"], out["mask"], out["ids"][0]
        assert image.shape[-2:] == mask.shape == ids.shape == output_size(params, (48, 64))
        valid = mask != 255
        assert torch.equal(
            valid, image[2] == 255
        )  # padding: ignore in the mask exactly where the image is fill
        assert torch.equal(valid, valid_region(params, (48, 64)))
        assert torch.equal(mask[valid], mask_of(image)[valid])
        assert torch.equal(ids[valid], mask[valid]) and (ids[~valid] == 0).all()  # int maps: nearest, fill 0


def test_bilinear_image_of_large_blocks_stays_aligned():
    blocks = (
        torch.arange(48).reshape(6, 8).repeat_interleave(8, 0).repeat_interleave(8, 1)
    )  # 48x64, 8px blocks
    sample = {"image": (blocks * 5).to(torch.uint8).expand(3, -1, -1).clone(), "mask": blocks}
    t = Compose([RandomRescale(scale=(0.7, 1.5)), RandomCrop(40), RandomHorizontalFlip()])
    for index in range(6):
        out, _ = t(sample, seeded_rng(1, 0, index))
        mask = out["mask"]
        m = F.pad(mask[None, None].float(), (1, 1, 1, 1), mode="replicate")
        flat = (F.max_pool2d(m, 3, 1) == -F.max_pool2d(-m, 3, 1))[0, 0] & (
            mask != 255
        )  # 3x3 neighbourhood is one block
        assert flat.sum() > 100
        assert torch.equal(out["image"][0][flat].long(), mask[flat] * 5)


REPLAY = {
    "picie": [RandomResizedCrop(32, scale=(0.5, 1.0)), RandomHorizontalFlip(), ColorJitter(p=1.0)],
    "rescale_crop_pad": [RandomRescale(scale=(0.75, 1.25)), RandomCrop(80), RandomHorizontalFlip()],
}


@pytest.mark.parametrize("name", list(REPLAY))
def test_replay_on_a_quarter_resolution_feature_map(name):
    t = Compose(REPLAY[name])
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    full, small = coords(64, 64), F.avg_pool2d(coords(64, 64)[None], 4)[0]  # same content at 16x16
    for index in range(6):
        out, params = t({"image": image, "coords": full}, seeded_rng(2, 0, index))
        replayed = replay(params, small)
        assert replayed.shape[-2:] == tuple(s // 4 for s in out["image"].shape[-2:])
        expected = F.avg_pool2d(out["coords"][None], 4)[0]
        valid = F.avg_pool2d(valid_region(params, (64, 64))[None, None].float(), 4)[0, 0] == 1
        assert valid.float().mean() > 0.3
        assert torch.allclose(replayed[:, valid], expected[:, valid], atol=1.0)
        # batched: one set of params on a batch, and each image its own
        batch = torch.stack([small, small * 2])
        assert torch.allclose(replay(params, batch)[1], replayed * 2)
        assert torch.allclose(replay_batch([params, params], batch), replay(params, batch))
        assert torch.allclose(t.replay(params, small), replayed)


def test_picie_replay_is_near_exact_inside():
    t = Compose([RandomResizedCrop(32, scale=(0.5, 1.0)), RandomHorizontalFlip()])
    small = F.avg_pool2d(coords(64, 64)[None], 4)[0]
    for index in range(6):
        out, params = t({"coords": coords(64, 64)}, seeded_rng(3, 0, index))
        expected = F.avg_pool2d(out["coords"][None], 4)[0]
        assert torch.allclose(replay(params, small)[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-3)


def test_crop_inverse_keeps_exactly_the_window_valid():
    x = torch.rand(4, 32, 32)
    mask = torch.randint(0, 21, (32, 32))
    t = Compose([RandomCrop(16)])
    out, params = t({"x": x, "mask": mask}, seeded_rng(0, 0, 0))
    top, left, h, w = params[0]["box"]
    window = torch.zeros(32, 32, dtype=torch.bool)
    window[top : top + h, left : left + w] = True
    back, valid = invert(params, out["x"])
    assert torch.equal(valid, window)
    assert torch.equal(back[:, valid], x[:, valid]) and (back[:, ~valid] == 0).all()
    back_mask, valid_mask = t.invert(params, out["mask"], kind="mask")
    assert torch.equal(valid_mask, window)
    assert torch.equal(back_mask[valid_mask], mask[window]) and (back_mask[~window] == 255).all()
    assert torch.equal(t.transforms[0].invert(params[0], out["x"], "map"), back)


def test_flip_is_its_own_inverse():
    x = torch.rand(2, 8, 12)
    flip = RandomHorizontalFlip(1.0)
    p = flip.sample(seeded_rng(0, 0, 0), (8, 12))
    assert torch.equal(flip.apply(p, x, "map"), x.flip(-1))
    assert torch.equal(flip.apply(p, flip.apply(p, x, "map"), "map"), x)
    assert torch.equal(flip.invert(p, x, "map"), x.flip(-1))
    assert RandomHorizontalFlip(0.0).sample(seeded_rng(0, 0, 0), (8, 12)) is None


def test_padding_is_invalid_and_inverse_recovers_the_input():
    x = torch.rand(3, 32, 32)
    t = Compose([RandomCrop(48)])
    out, params = t({"x": x, "mask": torch.zeros(32, 32, dtype=torch.long)}, seeded_rng(0, 0, 5))
    pad = out["mask"] == 255
    assert 0 < pad.sum() < 48 * 48 - 32 * 32 + 1
    assert torch.equal(valid_region(params, (32, 32)), ~pad)
    assert (out["x"][:, pad] == 0).all()
    back, valid = invert(params, out["x"])
    assert valid.all() and torch.equal(back, x)


def test_invert_of_a_full_compose():
    sample = {"x": coords(40, 48), "mask": position_sample(40, 48)["mask"]}
    t = Compose([RandomRescale(scale=(2.0, 2.0)), RandomCrop(64), RandomHorizontalFlip(), ColorJitter(p=1.0)])
    for index in range(4):
        out, params = t(sample, seeded_rng(4, 1, index))
        back, valid = invert(params, out["x"])
        assert valid.any() and not valid.all()
        assert torch.allclose(back[:, valid], sample["x"][:, valid], atol=0.5)
        mask, mvalid = invert(params, out["mask"], kind="mask")
        assert torch.equal(mask[mvalid], sample["mask"][mvalid]) and (mask[~mvalid] == 255).all()
        maps, bvalid = invert_batch([params, params], torch.stack([out["x"], out["x"]]))
        assert torch.equal(maps[1], back) and torch.equal(bvalid[0], valid)


def test_same_seed_epoch_index_gives_the_same_augmentation():
    t = Compose(
        [
            RandomRescale(long_side=(48, 80)),
            RandomCrop(48),
            RandomResizedCrop(32),
            RandomHorizontalFlip(),
            ColorJitter(p=1.0),
            GaussianBlur(p=1.0),
            RandomGrayscale(p=0.5),
            Cutout(size=(4, 12), p=1.0),
            Normalize(),
        ]
    )
    sample = {"image": torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8), "cam": torch.rand(5, 40, 56)}
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    a, pa = t(sample, seeded_rng(7, 3, 11))
    b, pb = t(sample, seeded_rng(7, 3, 11))
    assert pa == pb and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == py_state
    assert t(sample, seeded_rng(7, 3, 12))[1] != pa
    assert t(sample, seeded_rng(7, 4, 11))[1] != pa
    logged = json.loads(json.dumps(pa))
    again = t.apply(sample, logged)
    assert all(torch.equal(again[k], a[k]) for k in a)
    assert torch.equal(t.replay(logged, sample["image"], kind="image", geometric_only=False), a["image"])
    assert torch.equal(replay(logged, sample["cam"]), a["cam"])


def test_photometric_transforms_leave_mask_and_maps_alone():
    sample = position_sample()
    t = Compose([ColorJitter(p=1.0), GaussianBlur(p=1.0), RandomGrayscale(p=1.0), Cutout(p=1.0), Normalize()])
    out, params = t(sample, seeded_rng(0, 0, 0))
    assert [p["name"] for p in params] == ["color_jitter", "blur", "grayscale", "cutout", "normalize"]
    assert torch.equal(out["mask"], sample["mask"]) and torch.equal(out["ids"], sample["ids"])
    assert out["image"].dtype == torch.float32 and not torch.equal(out["image"], sample["image"].float())
    assert torch.equal(replay(params, sample["ids"]), sample["ids"])


def test_grayscale_gives_equal_channels():
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    gray = Compose([RandomGrayscale(p=1.0)])({"image": image}, seeded_rng(0, 0, 0))[0]["image"]
    assert gray.shape == image.shape and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_cutout_changes_only_its_box():
    image = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8)
    cut = Cutout(size=(8, 16), fill=0, p=1.0)
    for index in range(8):
        p = cut.sample(seeded_rng(0, 0, index), (32, 32))
        top, left, h, w = p["rect"]
        box = torch.zeros(32, 32, dtype=torch.bool)
        box[top : top + h, left : left + w] = True
        out = cut.apply(p, image, "image")
        assert box.any() and (out[:, box] == 0).all() and torch.equal(out[:, ~box], image[:, ~box])
        assert torch.equal(cut.apply(p, image, "mask"), image)


def test_normalize_uses_imagenet_statistics():
    out = Normalize().apply({}, torch.full((3, 2, 2), 255, dtype=torch.uint8), "image")
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[:, 0, 0], expected)


def test_rescale_ranges_are_respected():
    for by, lo, hi in (("long_side", 60, 70), ("short_side", 20, 24)):
        t = RandomRescale(**{by: (lo, hi)})
        for index in range(10):
            h, w = t.output_size(t.sample(seeded_rng(0, 0, index), (30, 50)), (30, 50))
            assert lo <= (max(h, w) if by == "long_side" else min(h, w)) <= hi


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: RandomRescale(long_side=(320, 640), scale=(0.5, 2.0)), ["long_side", "short_side", "scale"]),
        (lambda: RandomRescale(), ["exactly one"]),
        (lambda: RandomRescale(long_side=(640, 320)), ["long_side", "min <= max"]),
        (lambda: RandomRescale(scale=(0.5, 2.0), interpolation="cubic"), ["interpolation", "bicubic"]),
        (lambda: RandomCrop(0), ["size", "positive"]),
        (lambda: RandomCrop(32, fill="black"), ["fill"]),
        (lambda: RandomResizedCrop(32, scale=(0.5, 1.5)), ["scale"]),
        (lambda: RandomHorizontalFlip(1.5), ["p", "[0, 1]"]),
        (lambda: ColorJitter(hue=0.7), ["hue", "0.5"]),
        (lambda: ColorJitter(brightness=-1), ["brightness"]),
        (lambda: GaussianBlur(sigma=(2.0, 1.0)), ["sigma"]),
        (lambda: Cutout(size=(0, 8)), ["size"]),
        (lambda: Normalize(std=(0.0, 1.0, 1.0)), ["std"]),
        (lambda: Compose([lambda x: x]), ["Transform"]),
    ],
)
def test_constructor_errors_name_the_argument(make, words):
    with pytest.raises(ValueError) as e:
        make()
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))],
)
def test_replay_and_invert_keep_device_and_dtype(device):
    t = Compose([RandomRescale(scale=(0.6, 1.4)), RandomCrop(40), RandomHorizontalFlip(), ColorJitter(p=1.0)])
    sample = {"image": torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, device=device)}
    sample["mask"] = torch.randint(0, 21, (32, 48), device=device)
    out, params = t(sample, seeded_rng(0, 0, 1))
    assert all(v.device.type == device for v in out.values()) and out["image"].dtype == torch.uint8
    feat = torch.rand(2, 4, 8, 12, dtype=torch.float64, device=device)
    replayed = replay(params, feat)
    assert (
        replayed.dtype == torch.float64 and replayed.device.type == device and replayed.shape[-2:] == (10, 10)
    )
    back, valid = invert(params, out["mask"], kind="mask")
    assert back.device.type == device and valid.device.type == device and back.shape == (32, 48)


def test_mismatched_sample_and_bad_kind_are_rejected():
    t = Compose([RandomHorizontalFlip(1.0)])
    with pytest.raises(ValueError, match="share one"):
        t({"image": torch.zeros(3, 8, 8, dtype=torch.uint8), "mask": torch.zeros(8, 9)}, seeded_rng(0, 0, 0))
    with pytest.raises(ValueError, match="kind"):
        replay([t.transforms[0].sample(seeded_rng(0, 0, 0), (8, 8))], torch.zeros(1, 8, 8), kind="cam")
