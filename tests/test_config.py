"""Config: YAML + _base_ + overrides, type coercion, errors with suggestions, method registry, save, hash."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from lesseg.config import (
    Config,
    MethodConfig,
    config_hash,
    config_to_dict,
    format_config,
    load_config,
    method_config_class,
    registered_methods,
    save_config,
)
from lesseg.errors import ConfigError
from lesseg.methods import Method
from lesseg.registry import register_method


@dataclasses.dataclass
class ToyConfig(MethodConfig):
    alpha: float = 4.0
    steps: list[int] = dataclasses.field(default_factory=lambda: [1, 2])


@register_method("toy", config=ToyConfig)
class ToyMethod(Method):
    """A method's config class registers with the method (one registry)."""


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_are_valid():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.method.name == "cam" and type(cfg.method) is method_config_class("cam")
    assert cfg.optim.lr == 0.01 and cfg.data.scale_range == (0.5, 1.5)
    assert cfg.optim.lr_mult == {"backbone_weight": 1, "backbone_bias": 2, "new_weight": 10, "new_bias": 20}
    assert "cam" in registered_methods() and "toy" in registered_methods()


def test_yaml_with_base_merge(tmp_path):
    (tmp_path / "bases").mkdir()
    write(tmp_path / "bases/common.yaml", "data:\n  root: /data/voc\n  crop_size: 320\noptim:\n  lr: 0.1\n")
    write(tmp_path / "bases/amp.yaml", "train:\n  amp: off\n  epochs: 3\n")
    child = write(
        tmp_path / "exp.yaml",
        "_base_: [bases/common.yaml, bases/amp.yaml]\nname: exp1\ndata:\n  crop_size: 448\ntrain:\n",
    )
    cfg = load_config(child)
    assert cfg.name == "exp1"
    assert cfg.data.root == "/data/voc" and cfg.data.crop_size == 448  # child wins, siblings kept
    assert cfg.optim.lr == 0.1
    assert cfg.train.amp == "off" and cfg.train.epochs == 3  # 'off' stays a string; empty section ignored
    grandchild = write(tmp_path / "g.yaml", "_base_: exp.yaml\noptim:\n  lr: 1e-3\n")
    cfg = load_config(grandchild, ["data.crop_size=512"])
    assert cfg.optim.lr == 0.001 and cfg.data.crop_size == 512 and cfg.data.root == "/data/voc"


def test_base_cycle_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_overrides_of_every_type():
    cfg = load_config(
        overrides=[
            "data.crop_size=256",
            "optim.lr=1e-3",
            "optim.weight_decay=0",
            "optim.nesterov=true",
            "model.weights=null",
            "model.weights=/tmp/w.pth",
            "train.seed=7",
            "optim.milestones=[5,10]",
            "optim.betas=[0.5, 0.9]",
            "data.scale_range=[1, 2]",
            "data.options.protocol=27",
            "data.options.extra.depth=2",
            "optim.lr_mult.new_weight=5",
            "optim.grad_clip=1",
            "train.amp=off",
        ]
    )
    assert cfg.data.crop_size == 256
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.weight_decay == 0.0 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.optim.nesterov is True
    assert cfg.model.weights == "/tmp/w.pth"
    assert cfg.optim.milestones == [5, 10]
    assert cfg.optim.betas == (0.5, 0.9)
    assert cfg.data.scale_range == (1.0, 2.0) and isinstance(cfg.data.scale_range, tuple)
    assert cfg.data.options == {"protocol": 27, "extra": {"depth": 2}}
    assert cfg.optim.lr_mult["new_weight"] == 5.0 and cfg.optim.lr_mult["new_bias"] == 20.0
    assert cfg.optim.grad_clip == 1.0
    assert cfg.train.amp == "off"
    assert load_config(overrides=["model.weights=x.pth", "model.weights=null"]).model.weights is None
    assert load_config(overrides=["optim.lr='1e-2'"]).optim.lr == 0.01  # a quoted string is parsed too


def test_unknown_key_in_override_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr' \(did you mean 'optim\.lr'\?\)"):
        load_config(overrides=["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"'trian\.epochs'.*did you mean 'train\.epochs'"):
        load_config(overrides=["trian.epochs=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lr\.x'"):
        load_config(overrides=["optim.lr.x=1"])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "trian:\n  epochs: 3\n")
    with pytest.raises(
        ConfigError, match=r"'trian\.epochs' in .*bad\.yaml.*did you mean 'train\.epochs'"
    ) as e:
        load_config(path)
    assert str(path) in str(e.value)
    write(tmp_path / "base.yaml", "optim:\n  lrr: 0.1\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError, match=r"'optim\.lrr' in .*base\.yaml.*did you mean 'optim\.lr'"):
        load_config(child)


def test_wrong_type_names_key_type_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"'optim\.lr' expects float, got 'fast'"):
        load_config(overrides=["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"'train\.epochs' expects int, got 2\.5"):
        load_config(overrides=["train.epochs=2.5"])
    with pytest.raises(ConfigError, match=r"'data\.skip_bad' expects bool"):
        load_config(overrides=["data.skip_bad=1"])
    with pytest.raises(ConfigError, match=r"'optim\.milestones' expects list\[int\]"):
        load_config(overrides=["optim.milestones=[1, x]"])
    with pytest.raises(ConfigError, match=r"'optim\.betas' expects tuple\[float, float\]"):
        load_config(overrides=["optim.betas=[0.9]"])
    with pytest.raises(ConfigError, match=r"'data' .*must be a mapping"):
        load_config(overrides=["data=5"])
    with pytest.raises(ConfigError, match=r"'train\.seed' in .*t\.yaml expects int"):
        load_config(write(tmp_path / "t.yaml", "train: {seed: abc}\n"))


def test_invalid_values_list_what_is_valid():
    with pytest.raises(ConfigError, match=r"'optim\.name' must be one of sgd, adam, adamw; got 'sgdd'"):
        load_config(overrides=["optim.name=sgdd"])
    with pytest.raises(
        ConfigError, match=r"one of auto, folder, voc, cityscapes, cocostuff, cocostuff10k, ade20k, camvid"
    ):
        load_config(overrides=["data.format=coco"])
    with pytest.raises(ConfigError, match=r"'data\.batch_size' must be >= 1, got 0"):
        load_config(overrides=["data.batch_size=0"])
    with pytest.raises(ConfigError, match=r"'train\.device' must be auto, cpu, cuda or cuda:N"):
        load_config(overrides=["train.device=gpu"])
    with pytest.raises(ConfigError, match=r"'data\.scale_range' must be 0 < low <= high"):
        load_config(overrides=["data.scale_range=[2, 1]"])
    assert load_config(overrides=["train.device=cuda:1"]).train.device == "cuda:1"


def test_malformed_override_shows_the_form():
    with pytest.raises(ConfigError, match=r"'optim\.lr' is not of the form key=value"):
        load_config(overrides=["optim.lr"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["=3"])


def test_method_registry(tmp_path):
    cfg = load_config(overrides=["method.name=toy", "method.alpha=2"])
    assert type(cfg.method) is ToyConfig and cfg.method == ToyConfig(alpha=2.0)
    assert cfg.method.name == "toy" and cfg.method.alpha == 2.0 and isinstance(cfg.method.alpha, float)
    assert ToyConfig().name == "toy"
    path = write(tmp_path / "toy.yaml", "method:\n  name: toy\n  steps: [3]\n")
    assert load_config(path).method.steps == [3]
    with pytest.raises(ConfigError, match=r"'method\.alhpa'.*did you mean 'method\.alpha'"):
        load_config(path, ["method.alhpa=1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'method\.alpha'"):  # cam has no alpha
        load_config(overrides=["method.alpha=1"])
    with pytest.raises(
        ConfigError, match=r"unknown method 'tyo' \(did you mean 'toy'\?\); registered: cam, .*toy"
    ):
        load_config(overrides=["method.name=tyo"])


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        overrides=[
            "name=exp",
            "method.name=toy",
            "method.alpha=0.5",
            "data.options.protocol='27'",
            "data.options.flag=on",
            "data.root=2024-01-01",
            "model.weights=1e-3",
            "optim.milestones=[3, 6]",
            "optim.grad_clip=2.5",
            "train.amp=off",
        ]
    )
    assert cfg.data.options == {"protocol": "27", "flag": "on"} and cfg.model.weights == "0.001"
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert load_config(path).data.scale_range == (0.5, 1.5)
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)  # plain YAML for any reader
    assert format_config(cfg) == path.read_text()
    assert config_to_dict(cfg)["data"]["scale_range"] == [0.5, 1.5]
    assert not list(path.parent.glob("*.tmp"))
    assert load_config(base=cfg) == cfg and load_config(base=config_to_dict(cfg)) == cfg


def test_config_hash():
    cfg = Config()
    digest = config_hash(cfg)
    assert len(digest) == 12 and all(c in "0123456789abcdef" for c in digest)
    plain = config_to_dict(cfg)
    for section in ("data", "segmenter", "boundary"):  # neutral keys at their defaults stay out of hashes
        for f in dataclasses.fields(getattr(cfg, section)):
            if f.metadata.get("neutral"):
                del plain[section][f.name]
    assert config_hash(cfg) == config_hash(load_config()) == config_hash(plain)
    shuffled = {k: dict(reversed(v.items())) if isinstance(v, dict) else v for k, v in plain.items()}
    assert config_hash(dict(reversed(shuffled.items()))) == digest
    changed = load_config(overrides=["optim.lr=0.02"])
    assert config_hash(changed) != digest
    assert config_hash(changed, ["data", "model"]) == config_hash(cfg, ["model", "data"])
    assert config_hash(changed, ["optim"]) != config_hash(cfg, ["optim"])
    assert config_hash(changed, ["optim.momentum"]) == config_hash(cfg, ["optim.momentum"])
    with pytest.raises(ConfigError, match="did you mean 'data'"):
        config_hash(cfg, ["dta"])


def test_neutral_keys_stay_out_of_hashes_at_their_defaults():
    """Keys added after runs existed (sliding-window prediction) leave every stage hash of an unchanged
    config as it was, and change it once they are set."""
    cfg = Config()
    section = config_hash(cfg, ["segmenter"])
    assert config_hash(cfg, ["segmenter.test_window"]) == config_hash(cfg, [])
    slid = load_config(overrides=["segmenter.test_window=512"])
    assert config_hash(slid, ["segmenter"]) != section
    assert config_hash(slid, ["segmenter.test_window"]) != config_hash(cfg, ["segmenter.test_window"])
    assert config_hash(load_config(overrides=["segmenter.test_window=1024"]), ["segmenter"]) == section
