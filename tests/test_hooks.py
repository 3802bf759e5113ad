"""VEBI's forward hooks on the model: ReLU calls named as the extractor names them, maps equal to the
store's, and the "all layers" ablation checked against a hand-written forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actstore import extract, load_model
from actstore.errors import DatasetError, LayerError
from actstore.extract.hooks import hooked_accuracy, hooked_maps, store_images
from actstore.interpret.vebi_store import unit_maps
from actstore.interpret import store_model


@pytest.fixture
def resnet_val(with_trained, tmp_path):
    layers = ["layer3", "layer1.0.relu", "layer1.0.relu_1", "layer3.1.relu_1"]
    return extract("demo-resnet", "digits:val", tmp_path / "v.zarr", layers=layers, catalog=tmp_path / "c.yaml",
                   progress=False).store


def _class_images(store, loaded, c):
    rows = np.arange(store.class_rows(c).start, store.class_rows(c).stop)
    return list(store_images(store, loaded, rows, batch_size=16))


def test_hooked_maps_equal_the_stores_maps(resnet_val):
    loaded = store_model(resnet_val)
    images = _class_images(resnet_val, loaded, 3)
    channels = {"layer1.0.relu": np.arange(16), "layer1.0.relu_1": np.arange(16), "layer3.1.relu_1": np.array([2, 7, 40])}
    got = hooked_maps(loaded, images, channels)
    for name, maps in got.items():
        stored = np.asarray(resnet_val.array(f"layers/{name}/maps")[resnet_val.class_rows(3)], np.float32)
        np.testing.assert_allclose(maps, stored[..., channels[name]], rtol=2e-3, atol=2e-3)  # the store keeps float16
        (ch, from_store), = unit_maps(resnet_val, 3, {name: channels[name]}).values()
        np.testing.assert_array_equal(from_store, stored[..., ch])  # only those channels, read from the store
    assert got["layer3.1.relu_1"].shape[-1] == 3
    assert not np.allclose(got["layer1.0.relu"], got["layer1.0.relu_1"])  # two calls of one module


def test_unhooked_accuracy_is_the_stores(resnet_val):
    loaded = store_model(resnet_val)
    for c in (0, 7):
        logits = np.asarray(resnet_val.array("samples/logits")[resnet_val.class_rows(c)])
        assert hooked_accuracy(loaded, _class_images(resnet_val, loaded, c), c) == pytest.approx(
            float((logits.argmax(1) == c).mean()))


def _manual_logits(model, x, zero_call: str, channels):
    """demo-resnet's forward written out by hand, zeroing ``channels`` after one named ReLU call."""
    def relu(t, name):
        t = torch.relu(t)
        if name == zero_call:
            t = t.clone()
            t[:, channels] = 0
        return t

    x = relu(model.bn1(model.conv1(x)), "relu")
    for li in (1, 2, 3):
        for bi, block in enumerate(getattr(model, f"layer{li}")):
            name = f"layer{li}.{bi}.relu"
            idt = x if block.downsample is None else block.downsample(x)
            out = relu(block.bn1(block.conv1(x)), name)
            x = relu(block.bn2(block.conv2(out)) + idt, name + "_1")
    return model.fc(torch.flatten(model.avgpool(x), 1))


@pytest.mark.parametrize("call", ["relu", "layer1.0.relu", "layer2.1.relu_1", "layer3.1.relu_1"])
def test_all_layers_ablation_zeroes_the_named_call(resnet_val, call):
    loaded = store_model(resnet_val)
    images = _class_images(resnet_val, loaded, 5)
    channels = np.array([0, 3, 5])
    with torch.inference_mode():
        want = np.mean(np.concatenate([(_manual_logits(loaded.module, x, call, channels).argmax(1) == 5).numpy()
                                       for x in images]))
    assert hooked_accuracy(loaded, images, 5, {call: channels}) == pytest.approx(float(want))


def test_final_call_switched_off_leaves_only_the_bias(resnet_val):
    loaded = store_model(resnet_val)
    images = _class_images(resnet_val, loaded, 2)
    bias_class = int(loaded.module.fc.bias.argmax())
    acc = hooked_accuracy(loaded, images, 2, {"layer3.1.relu_1": np.arange(64)})
    assert acc == (1.0 if bias_class == 2 else 0.0)


def test_unknown_relu_call_is_an_error(resnet_val):
    loaded = store_model(resnet_val)
    with pytest.raises(LayerError, match="no ReLU call layer9.0.relu"):
        hooked_accuracy(loaded, _class_images(resnet_val, loaded, 0)[:1], 0, {"layer9.0.relu": np.array([0])})


def test_changed_dataset_is_refused(resnet_val):
    loaded = load_model("demo-resnet")
    resnet_val.provenance["dataset"]["fingerprint"] = "0" * 16
    with pytest.raises(DatasetError, match="changed since extraction"):
        next(store_images(resnet_val, loaded, np.arange(3)))
