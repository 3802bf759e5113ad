"""Model registry, weights sources, layer names and VEBI unit counts (checked against the reference)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from actstore import errors, extract, load_model
from actstore.describe import describe_model


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(errors.ModelError) as info:
        load_model("resnet19", "random")
    msg = str(info.value)
    assert "unknown model 'resnet19'" in msg and "did you mean" in msg and "vgg16_bn" in msg and "demo-vgg" in msg


def test_unknown_layer_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(errors.LayerError) as info:
        extract("demo-resnet", "synthetic:n=4,classes=2", tmp_path / "x.zarr", layers=["layer7"],
                weights="random", catalog=tmp_path / "c.yaml", progress=False)
    assert "no layer 'layer7'" in str(info.value) and "layer3.1.relu_1" in str(info.value)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.zarr.partial").exists()


def test_non_spatial_layer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.LayerError, match="not spatial maps"):
        extract("demo-resnet", "synthetic:n=4,classes=2", tmp_path / "x.zarr", layers=["fc"],
                weights="random", catalog=tmp_path / "c.yaml", progress=False)


@pytest.mark.parametrize(("model", "units", "default"), [
    ("resnet18", 3904, "layer4"),      # reference: stem 64 + 8 blocks x 2 calls
    ("resnet50", 22720, "layer4"),     # stem 64 + 16 blocks x 3 calls
    ("vgg19", 5504, "features.35"),    # 16 ReLU layers in features; classifier ReLUs excluded
    ("vgg16_bn", 4224, "features.42"),
])
def test_unit_counts_match_the_reference(model: str, units: int, default: str) -> None:
    d = describe_model(model)
    assert d["units"]["n_units"] == units
    assert d["default_layer"] == default
    side = 14 if model.startswith("vgg") else 7  # VGG: the last conv ReLU, before pool5
    assert d["default_shape"] == [{"resnet50": 2048}.get(model, 512), side, side]  # (C, H, W) at 224 px


def test_weights_file_missing_corrupt_or_foreign(tmp_path: Path) -> None:
    with pytest.raises(errors.WeightsError, match="does not exist"):
        load_model("resnet18", str(tmp_path / "none.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(errors.WeightsError, match="not a readable state dict"):
        load_model("resnet18", str(bad))
    other = tmp_path / "vgg.pt"
    torch.save(load_model("demo-vgg", "random").module.state_dict(), other)
    with pytest.raises(errors.WeightsError, match="do not fit model 'demo-resnet'"):
        load_model("demo-resnet", str(other))


def test_local_state_dict_infers_classes_and_records_sha(tmp_path: Path) -> None:
    net = load_model("resnet18", "random", num_classes=7).module
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    loaded = load_model("resnet18", str(path))
    assert loaded.num_classes == 7 and loaded.weights_sha256 and not loaded.random_init
    assert torch.equal(loaded.module.fc.weight, net.fc.weight)


def test_pretrained_weights_come_only_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(errors.WeightsError, match="not in the local torch cache") as info:
        load_model("resnet18")
    assert "never downloads" in str(info.value)
    from torchvision.models import ResNet18_Weights

    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(load_model("resnet18", "random").module.state_dict(), cached)
    loaded = load_model("resnet18", "IMAGENET1K_V1")
    assert loaded.weights == "ResNet18_Weights.IMAGENET1K_V1" and loaded.num_classes == 1000
    assert loaded.transform is not None and "crop_size=[224]" in loaded.preprocessing["transform"]
    with pytest.raises(errors.WeightsError, match="not a weights file or a member"):
        load_model("resnet18", "IMAGENET9K")


def test_random_init_is_flagged_and_reproducible() -> None:
    a, b = load_model("demo-resnet", "random"), load_model("demo-resnet", "random")
    assert a.random_init and a.provenance()["random_init"] is True
    assert a.weights_sha256 == b.weights_sha256


def test_demo_models_reach_95_percent(with_trained: Path) -> None:
    from actstore.demo.train import digits_tensors, evaluate_accuracy

    xv, yv = digits_tensors("val")
    for name in ("demo-resnet", "demo-vgg"):
        assert evaluate_accuracy(load_model(name).module, xv, yv) >= 0.95, name
