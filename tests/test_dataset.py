import json

import pytest
import torch
from torch.utils.data import DataLoader

from lesseg.data import read_dataset
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.splits import BaseNovelSplit, Supervision
from lesseg.errors import DataError
from tiny_data import make_folder_dataset


def augment():
    return T.Compose(
        [
            T.RandomRescale(scale=(0.7, 1.5)),
            T.RandomCrop(6),
            T.RandomHorizontalFlip(),
            T.ColorJitter(),
            T.Normalize(),
        ]
    )


@pytest.fixture
def source(tmp_path):
    return read_dataset(make_folder_dataset(tmp_path / "ds"))


def test_full_supervision_sample(source):
    s = SegDataset(source, "train")[1]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 6, 8)
    assert s["mask"].dtype == torch.int64 and s["mask"][1, 5] == 2
    assert s["tags"].tolist() == [0, 1, 1, 0] and s["has_mask"] and s["has_tags"] and s["id"] == "1_2_s"


def test_tags_only_hides_every_mask(source):
    ds = SegDataset(source, "train", supervision=Supervision(masks="none"))
    for s in ds:
        assert (s["mask"] == 255).all() and not s["has_mask"] and s["has_tags"] and s["tags"].sum() > 0


def test_semi_and_weak_shot_policies(source):
    semi = SegDataset(source, "train", supervision=Supervision(masks=frozenset({"1_2_s"}), tags=False))
    assert [bool(s["has_mask"]) for s in semi] == [False, True, False, False]
    assert all(s["tags"].sum() == 0 and not s["has_tags"] for s in semi)
    shot = SegDataset(source, "train", supervision=Supervision.weak_shot(BaseNovelSplit((0, 1, 3), (2,))))
    s = shot[1]  # mask holds classes 1 and 2; class 2 is novel: its pixels become ignore, its tag stays
    assert (s["mask"][:, 4:] == 255).all() and (s["mask"][1:, :4] == 1).all()
    assert s["tags"].tolist() == [0, 1, 1, 0]


def _batches(ds, workers, epoch):
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=2, num_workers=workers, shuffle=False)
    return [(b["image"], b["mask"], b["params"]) for b in loader]


def test_augmentation_does_not_depend_on_worker_count(source):
    ds = SegDataset(source, "train", transform=augment(), seed=7, return_params=True)
    zero, two = _batches(ds, 0, epoch=3), _batches(ds, 2, epoch=3)
    for (i0, m0, p0), (i2, m2, p2) in zip(zero, two):
        assert torch.equal(i0, i2) and torch.equal(m0, m2) and p0 == p2
    # the same sample alone (as a resumed run or another process would load it) matches too
    alone = SegDataset(source, "train", transform=augment(), seed=7, return_params=True)
    alone.set_epoch(3)
    assert torch.equal(alone[3]["image"], zero[1][0][1])
    other_epoch = _batches(ds, 0, epoch=4)
    assert zero[0][2] != other_epoch[0][2]
    assert isinstance(json.loads(zero[0][2][0]), list)


def test_mask_of_wrong_size_names_both_files(source, tmp_path):
    import numpy as np

    from tiny_data import write_png

    write_png(source.root / "masks" / "1_1_s.png", np.zeros((5, 8), np.uint8))
    with pytest.raises(DataError, match=r"1_1_s.png: mask size 8x5 differs from image .*1_1_s.png size 8x6"):
        SegDataset(source, "train")[0]
