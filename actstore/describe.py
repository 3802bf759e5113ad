"""Human- and JSON-friendly descriptions of stores and models (``actstore info``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["describe_store", "describe_model", "format_store", "format_model"]


def _size_on_disk(path: Path | str) -> int:
    if isinstance(path, str):  # a URL
        from .location import fs_for

        fs, root = fs_for(path)
        return int(fs.du(root))
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe_store(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Layers and shapes, classes with row counts, rows, size on disk and provenance of a store."""
    from .store.reader import open_store

    store = open_store(path)
    counts = dict(zip(store.classes, map(int, store.class_offsets[1:] - store.class_offsets[:-1]), strict=True))
    arrays = {name: {"shape": list(arr.shape), "dtype": str(arr.dtype), "chunks": list(arr.chunks)}
              for name, arr in store.data_arrays().items()}
    return {"path": str(store.path), "rows": store.n_rows, "classes": counts, "layers": store.provenance["layers"],
            "arrays": arrays, "bytes_on_disk": _size_on_disk(store.path), "provenance": store.provenance}


def describe_model(name: str, weights: str | None = None, catalog: Any = None) -> dict[str, Any]:
    """Every layer node of a model with its output shape on one input, and its ReLU-call units; ``name`` is
    looked up in ``catalog`` (a path, URL or :class:`~actstore.catalog.Catalog`) like every model name."""
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    from .errors import LayerError
    from .extract.models import layer_names, layer_node, load_model
    from .extract.probe import Probe

    loaded = load_model(name, weights or "random", catalog=catalog)
    names = layer_names(loaded.module)
    x = torch.zeros(1, 3, loaded.input_size, loaded.input_size)
    with torch.inference_mode():
        out = create_feature_extractor(loaded.module, return_nodes=names).eval()(x)
    layers = [{"name": n, "shape": list(out[n].shape[1:])} for n in names]
    probe = Probe(loaded, [], units=True)
    probe.describe(x)
    try:
        default = loaded.default_layer
    except LayerError:  # models without a default layer
        default = None
    shape = list(out[layer_node(names, default)].shape[1:]) if default is not None else None
    return {"model": name, "builder": loaded.builder, "family": loaded.family, "input_size": loaded.input_size,
            "default_layer": default, "default_shape": shape, "layers": layers,
            "units": {"n_units": sum(c for _, c in probe.unit_layers), "relu_calls": len(probe.unit_layers)}}


def format_store(d: dict[str, Any]) -> str:
    p = d["provenance"]
    lines = [f"store     {d['path']}",
             f"rows      {d['rows']}   classes {len(d['classes'])}   on disk {d['bytes_on_disk'] / 1e6:,.1f} MB",
             f"model     {p['model']['name']} ({p['model']['builder']}, weights {p['model']['weights']})",
             f"dataset   {p['dataset']['spec']}  fingerprint {p['dataset']['fingerprint']}",
             f"key       {p['key']}   dtype {p['dtype']}   status {p['status']}"]
    lines += [f"array     {name:<28} {tuple(a['shape'])} {a['dtype']} chunks {tuple(a['chunks'])}"
              for name, a in d["arrays"].items()]
    counts = ", ".join(f"{c}:{n}" for c, n in list(d["classes"].items())[:20])
    lines.append(f"per class {counts}{' ...' if len(d['classes']) > 20 else ''}")
    return "\n".join(lines)


def format_model(d: dict[str, Any]) -> str:
    lines = [f"model {d['model']} ({d['builder']}, {d['family']}), input {d['input_size']}px, "
             f"default layer {d['default_layer']}, VEBI units {d['units']['n_units']} "
             f"over {d['units']['relu_calls']} ReLU calls"]
    lines += [f"  {layer['name']:<32} {tuple(layer['shape'])}" for layer in d["layers"]]
    return "\n".join(lines)
