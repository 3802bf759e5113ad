"""Train the demo models once on the digits train split and cache them under ``ACTSTORE_HOME``."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write_bytes, atomic_write_text
from ..config import home
from ..errors import ModelError
from ..progress import status
from ..store.lock import WriterLock

__all__ = ["demo_weights", "train_demo_model", "evaluate_accuracy", "digits_tensors", "TRAIN_SETTINGS"]

TRAIN_SETTINGS: dict[str, Any] = {"epochs": 12, "batch_size": 64, "lr": 3e-3, "weight_decay": 5e-4,
                                  "shift": 2, "seed": 0}
MIN_ACCURACY = 0.95


def digits_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from ..extract.datasets import resolve_dataset

    source = resolve_dataset(f"digits:{split}")
    x = torch.stack([source.load(i) for i in range(source.n)])
    return x, torch.as_tensor(source.labels)


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())


def train_demo_model(builder: str) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``builder`` (demo-resnet or demo-vgg) from a fixed seed; returns it and its metrics."""
    from ..extract.models import build_model

    s = TRAIN_SETTINGS
    torch.manual_seed(s["seed"])
    gen = torch.Generator().manual_seed(s["seed"])
    x, y = digits_tensors("train")
    xv, yv = digits_tensors("val")
    model = build_model(builder, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    steps = s["epochs"] * -(-len(x) // s["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s["lr"], total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(s["epochs"]):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), s["batch_size"]):
            idx = perm[i:i + s["batch_size"]]
            dy, dx = torch.randint(-s["shift"], s["shift"] + 1, (2,), generator=gen).tolist()
            xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))  # small translations
            opt.zero_grad()
            loss_fn(model(xb), y[idx]).backward()
            opt.step()
            sched.step()
    acc = evaluate_accuracy(model, xv, yv)
    return model, {"val_accuracy": acc, "train_seconds": round(time.perf_counter() - start, 1),
                   "settings": s, "n_train": len(x), "n_val": len(xv)}


def demo_weights(builder: str) -> Path:
    """Path of the cached state dict for ``builder``, training it first if it is not there."""
    folder = home() / "models"
    path = folder / f"{builder}.pt"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with WriterLock(folder / f".{builder}.training", f"demo model {builder}"):
        if path.is_file():  # another process trained it while we waited
            return path
        status(f"training {builder} on digits (once; cached in {folder})...")
        model, metrics = train_demo_model(builder)
        if metrics["val_accuracy"] < MIN_ACCURACY:
            raise ModelError(f"{builder} reached only {metrics['val_accuracy']:.3f} validation accuracy after "
                             "training; the demo's data or settings changed")
        status(f"{builder}: validation accuracy {metrics['val_accuracy']:.3f} ({metrics['train_seconds']} s)")
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue(), what=f"the {builder} weights")
        atomic_write_text(folder / f"{builder}.json", json.dumps(metrics, indent=1), what=f"the {builder} metrics")
    return path


def demo_metrics(builder: str) -> dict[str, Any]:
    """The training record of a cached demo model (accuracy, seconds, settings)."""
    path = home() / "models" / f"{builder}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


