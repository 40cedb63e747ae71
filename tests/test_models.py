"""Tests of lesseg.models: backbone strides, local weights, CAM classifier, DeepLabv3+, param groups."""

import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from lesseg.errors import ConfigError
from lesseg.models import (
    CAMClassifier,
    DeepLabV3Plus,
    create_backbone,
    create_model,
    list_models,
    multilabel_soft_margin_loss,
)

X64 = torch.zeros(1, 3, 64, 64)


def _last_size(backbone, x=X64):
    with torch.no_grad():
        return tuple(backbone.eval()(x)[-1].shape[-2:])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize(("stride", "size"), [(8, 8), (16, 4)])
def test_resnet_output_stride(name, stride, size):
    backbone = create_backbone(name, output_stride=stride)
    assert _last_size(backbone) == (size, size)
    assert backbone.reductions == [2, 4, 8, min(16, stride), stride]
    assert len(backbone.channels) == 5 and backbone.output_stride == stride


def test_convnext_strides():
    assert create_backbone("convnext_atto", output_stride=8).reductions == [4, 8, 8, 8]
    backbone = create_backbone("convnext_atto", output_stride=16)
    assert backbone.reductions == [4, 8, 16, 16] and _last_size(backbone) == (4, 4)


def test_vit_stride_16_only():
    backbone = create_backbone("vit_tiny_patch16_224", output_stride=16, img_size=64)
    assert set(backbone.reductions) == {16} and _last_size(backbone) == (4, 4)
    with pytest.raises(ConfigError, match=r"model.output_stride=8.*valid output strides.*\[16\]"):
        create_backbone("vit_tiny_patch16_224", output_stride=8, img_size=64)


def test_silently_ignored_output_stride_is_caught(monkeypatch):
    real = timm.create_model

    def ignoring(name, **kwargs):  # a timm model that accepts output_stride but does not dilate
        kwargs.pop("output_stride", None)
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", ignoring)
    with pytest.raises(ConfigError, match=r"output_stride=8.*timm did not apply it.*\[8, 16, 32\]"):
        create_backbone("resnet18", output_stride=8)


def test_bad_backbone_options():
    with pytest.raises(ConfigError, match="model.output_stride.*8, 16, 32"):
        create_backbone("resnet18", output_stride=4)
    with pytest.raises(ConfigError, match="model.backbone.*did you mean 'resnet18'"):
        create_backbone("resnt18")


def _perturbed(name="resnet18"):
    backbone = create_backbone(name)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.rand_like(p))
    return backbone


def _assert_equal_params(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_local_weights_pth_and_safetensors(tmp_path):
    backbone = _perturbed()
    torch.save({"state_dict": backbone.state_dict()}, tmp_path / "b.pth")
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, tmp_path / "b.safetensors")
    for file in ("b.pth", "b.safetensors"):
        _assert_equal_params(backbone, create_backbone("resnet18", weights=str(tmp_path / file)))


def test_local_weights_timm_classifier_checkpoint(tmp_path):
    full = timm.create_model("resnet18", num_classes=10)
    state = {"module." + k: v for k, v in full.state_dict().items()}  # DataParallel prefix, fc.* keys
    assert "module.fc.weight" in state
    torch.save(state, tmp_path / "cls.pth")
    loaded = create_backbone("resnet18", output_stride=8, weights=str(tmp_path / "cls.pth")).state_dict()
    assert all(torch.equal(v, full.state_dict()[k.removeprefix("body.")]) for k, v in loaded.items())


def test_bad_weights_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match=f"model.weights.*{missing}"):
        create_backbone("resnet18", weights=str(missing))
    torch.save({"foo.weight": torch.zeros(1), "conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=r"missing key.*bn1\.weight.*unexpected key.*foo\.weight"):
        create_backbone("resnet18", weights=str(tmp_path / "bad.pth"))


def test_pretrained_without_network(monkeypatch):
    from timm.models import _builder

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", offline)
    with pytest.raises(
        ConfigError, match=r"could not fetch pretrained weights for resnet18 \(no network\?\)"
    ):
        create_backbone("resnet18", pretrained=True)


def test_cam_classifier():
    model = CAMClassifier("resnet18", num_classes=3)
    out = model(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 3) and out["cams"].shape == (2, 3, 4, 4)
    assert model.head.bias is None and model.head.kernel_size == (1, 1)
    torch.testing.assert_close(out["logits"], out["cams"].mean(dim=(2, 3)))


def test_multilabel_soft_margin_loss_by_hand():
    loss = multilabel_soft_margin_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1, 0]]))
    expected = (math.log(1 + math.exp(0)) + math.log(1 + math.exp(2))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6) and round(expected, 4) == 1.4100


@pytest.mark.parametrize(("stride", "norm"), [(8, "bn"), (16, "gn")])
def test_deeplab_output_size(stride, norm):
    model = create_model("deeplabv3plus", backbone="resnet18", num_classes=5, output_stride=stride, norm=norm)
    rates = [branch[0].dilation[0] for branch in model.decoder.aspp.branches[1:]]
    assert rates == ([12, 24, 36] if stride == 8 else [6, 12, 18])
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 48))["logits"].shape == (1, 5, 64, 48)
    if norm == "gn":  # a batch of one trains (BatchNorm would fail on the 1x1 image-pooling branch)
        model.train()(torch.randn(1, 3, 64, 64))["logits"].sum().backward()
        assert model.head.weight.grad is not None


def test_deeplab_first_loss_is_about_log_classes():
    """The classifier starts near zero (DeepLab's std 0.01), so the first cross-entropy is ~log(21) for any
    labels; He init there gave logits of std ~3.5 and a first loss of ~6 on MSRC-21."""
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", backbone="resnet18", num_classes=21).train()
    logits = model(torch.randn(4, 3, 64, 64))["logits"]
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 21, (4, 64, 64)))
    assert logits.std() < 0.2
    assert abs(loss.item() - math.log(21)) < 0.05


def test_bad_inputs_and_options():
    model = CAMClassifier("resnet18", num_classes=2)
    with pytest.raises(ValueError, match=r"4-D input \[N, 3, H, W\].*unsqueeze"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="expected 3 input channels"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ConfigError, match=r"model.norm='ln'.*\('bn', 'gn'\)"):
        DeepLabV3Plus("resnet18", norm="ln")
    with pytest.raises(ConfigError, match="stride-4 feature map"):
        DeepLabV3Plus("vit_tiny_patch16_224", img_size=64)
    with pytest.raises(ConfigError, match=r"did you mean 'deeplabv3plus'.*cam_classifier"):
        create_model("deeplab")
    assert list_models() == [
        "cam_classifier",
        "deeplabv3plus",
        "maskformer",
        "mcis",
        "picie_fpn",
        "pseudoseg",
        "simformer",
    ]


def test_param_groups():
    model = CAMClassifier("resnet18", num_classes=2)
    groups = model.param_groups()
    ids = [id(p) for g in groups.values() for p in g]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable) and set(ids) == {id(p) for p in trainable}
    assert [id(p) for p in groups["new_weight"]] == [id(model.head.weight)] and groups["new_bias"] == []
    backbone_bias = {id(p) for p in groups["backbone_bias"]}
    bn = model.encoder.body.bn1
    assert id(bn.weight) in backbone_bias and id(bn.bias) in backbone_bias
    assert id(model.encoder.body.conv1.weight) in {id(p) for p in groups["backbone_weight"]}


def test_vit_cam_classifier_fixed_input_size():
    model = CAMClassifier("vit_tiny_patch16_224", num_classes=2, img_size=64)
    with torch.no_grad():
        assert model(X64)["cams"].shape == (1, 2, 4, 4)
    with pytest.raises(ConfigError, match="built for 64x64 inputs but got 80x80; set model.img_size"):
        model(torch.zeros(1, 3, 80, 80))


def test_vgg16_at_output_stride_8_is_deeplab_largefov():
    """MCIS's classifier backbone: pool4 3x3 stride 1, conv5 dilated by 2, no pool5; same parameters."""

    backbone = create_backbone("vgg16", output_stride=8)
    assert backbone.reductions == [1, 2, 4, 8, 8] and backbone.channels == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in backbone(torch.zeros(1, 3, 64, 64))] == [64, 32, 16, 8, 8]
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation for c in convs[-4:]] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    plain = timm.create_model("vgg16", features_only=True, out_indices=(0, 1, 2, 3, 4))
    assert [k for k, _ in backbone.body.named_parameters()] == [k for k, _ in plain.named_parameters()]
    assert create_backbone("vgg16", output_stride=16).reductions == [1, 2, 4, 8, 16]


def test_picie_fpn_features_are_unit_norm_at_stride_4():
    from lesseg.models import PiCIEFPN

    net = PiCIEFPN("resnet18", channels=32)
    out = net(torch.randn(1, 3, 96, 64))["features"]
    assert out.shape == (1, 32, 24, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(1, 24, 16), atol=1e-5)
    groups = net.param_groups()
    assert len(groups["new_weight"]) == 4 and len(groups["new_bias"]) == 4  # the four 1x1 laterals
