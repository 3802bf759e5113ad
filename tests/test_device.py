"""Device choice: auto falls back to the CPU, CUDA without a GPU is a clear error; on a machine with
a GPU, extraction and the topic model on CUDA match the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actstore import extract, interpret
from actstore.device import resolve_device, to_device
from actstore.errors import ActstoreError

from conftest import SMALL

CUDA = torch.cuda.is_available()


def test_auto_and_bad_devices():
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(ActstoreError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not CUDA:
        with pytest.raises(ActstoreError, match="torch sees no CUDA device"):
            resolve_device("cuda:0")
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = to_device(x, torch.device("cpu"), torch.float32)
    assert t.dtype == torch.float32 and np.array_equal(t.numpy(), x)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_extraction_and_topics_match_the_cpu(tmp_path):
    stores = {dev: extract("demo-resnet", SMALL, tmp_path / f"{dev}.zarr", layers=["layer3"], units=True,
                           weights="random", device=dev, dtype="float32", catalog=tmp_path / f"{dev}.yaml",
                           progress=False).store for dev in ("cpu", "cuda")}
    a, b = (np.asarray(s.maps_array("layer3")[:]) for s in stores.values())
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    topics = {dev: interpret(stores["cpu"], "topic", n_topics=4, epochs=1, device=dev)[0] for dev in ("cpu", "cuda")}
    cpu, cuda = (topics[d].arrays for d in ("cpu", "cuda"))
    assert cpu["kept"].tolist() == cuda["kept"].tolist()  # same seed, same data: the same fit up to round-off
    np.testing.assert_allclose(cuda["topics"], cpu["topics"], atol=1e-3)
    np.testing.assert_allclose(cuda["w2"], cpu["w2"], atol=1e-3)
