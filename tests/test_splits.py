import pytest

from lesseg.data import ClassInfo
from lesseg.data.splits import (
    BaseNovelSplit,
    LabeledSplit,
    Supervision,
    base_novel_split,
    labeled_split,
    parse_fraction,
)
from lesseg.errors import ConfigError, DataError

IDS = [f"img{i:03d}" for i in range(64)]


@pytest.mark.parametrize("fraction, n", [("1/16", 4), ("1/8", 8), ("1/4", 16), ("1/2", 32), (0.25, 16)])
def test_labeled_fraction_sizes(fraction, n):
    s = labeled_split(IDS, fraction=fraction, seed=3)
    assert len(s.labeled) == n and len(s.unlabeled) == 64 - n
    assert set(s.labeled) | set(s.unlabeled) == set(IDS) and not set(s.labeled) & set(s.unlabeled)


def test_labeled_split_reproducible_by_seed_and_order_free():
    a = labeled_split(IDS, fraction="1/8", seed=1)
    b = labeled_split(list(reversed(IDS)), fraction="1/8", seed=1)
    c = labeled_split(IDS, fraction="1/8", seed=2)
    assert a == b and a.labeled != c.labeled


def test_labeled_split_from_list_and_saved_round_trip(tmp_path):
    s = labeled_split(IDS, labeled_ids=["img005", "img001"])
    assert s.labeled == ("img001", "img005")
    s.save(tmp_path / "split.json")
    assert LabeledSplit.load(tmp_path / "split.json") == s
    with pytest.raises(DataError, match="not in the split"):
        labeled_split(IDS, labeled_ids=["nope"])
    with pytest.raises(ConfigError, match="exactly one"):
        labeled_split(IDS)


def test_parse_fraction_errors():
    assert parse_fraction("1/16") == 0.0625
    with pytest.raises(ConfigError, match="must lie in"):
        parse_fraction("3/2")
    with pytest.raises(ConfigError, match="like 1/8"):
        parse_fraction("half")


def test_base_novel_split_never_makes_background_novel(tmp_path):
    info = ClassInfo(("background", *[f"c{i}" for i in range(20)]), background="background")
    for seed in range(5):
        s = base_novel_split(info, novel_fraction=0.25, seed=seed)
        assert len(s.novel) == 5 and 0 in s.base and 0 not in s.novel
        assert sorted(s.base + s.novel) == list(range(21))
    assert base_novel_split(info, seed=4) == base_novel_split(info, seed=4)
    named = base_novel_split(info, novel=["c3", "c7"])
    assert named.novel == (4, 8)
    named.save(tmp_path / "bn.json", info)
    assert BaseNovelSplit.load(tmp_path / "bn.json") == named
    with pytest.raises(ConfigError, match="cannot be novel"):
        base_novel_split(info, novel=["background"])
    with pytest.raises(DataError, match="did you mean 'c3'"):
        base_novel_split(info, novel=["c33"])


def test_supervision_policy():
    semi = Supervision.semi(labeled_split(IDS, labeled_ids=["img002"]))
    assert semi.exposes_mask("img002") and not semi.exposes_mask("img003")
    assert not Supervision(masks="none").exposes_mask("img002")
    shot = Supervision.weak_shot(BaseNovelSplit((0, 1), (2,)))
    assert shot.novel_classes == frozenset({2}) and shot.exposes_mask("x")
    with pytest.raises(ConfigError, match="'all', 'none'"):
        Supervision(masks="some")
