"""Topic-based concepts with completeness (Yeh et al., NeurIPS 2020), reference §3.

Topics c (C x m) are learned jointly over all classes so that the maps, projected onto the
column-normalised topics, truncated and reconstructed by a bias-free network g, still give the
right class through the model's frozen head h:

    ĉ = c / ||c||_col,  s = f·ĉ,  s_n = (f / ||f||_chan)·ĉ,  v₀ = s ⊙ 1[s_n > β],
    v = v₀ / (Σ_topics v₀ + 1e-3),  f̂ = ReLU(v W₁) W₂,  logits = h(f̂)
    L = CE(y, logits) − λ₁ · mean_j(mean of the top-K s_n[:, j] over the batch's positions)
        + λ₂ · mean_{j,k}(ĉᵀĉ − I)

Adam; every learned matrix starts U(−0.5, 0.5); topics with cosine > 0.95 to an earlier one are
dropped after training. Minibatches come from any iterator of (maps, labels), so the store-level
driver can stream them through a shuffle buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import resolve_device, to_device
from .vebi import InterpretError

__all__ = ["TopicModel", "TOPIC_DEFAULTS"]

TOPIC_DEFAULTS: dict[str, Any] = {"n_topics": 70, "lambda1": 10.0, "lambda2": 10.0, "top_k": 2, "threshold": 0.0,
                                  "epochs": 10, "lr": 1e-3, "batch_size": 256, "seed": 0, "hidden": 500,
                                  "duplicate_cosine": 0.95}
"""The reference's AwA settings (its only full-scale run): m = 70, λ₁ = λ₂ = 10, K = 2, β = 0,
10 epochs, Adam at 1e-3, batches of 256, a 500-unit hidden layer in g."""


class _Topics(nn.Module):
    def __init__(self, channels: int, n_topics: int, hidden: int) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.empty(channels, n_topics).uniform_(-0.5, 0.5))
        self.w1 = nn.Parameter(torch.empty(n_topics, hidden).uniform_(-0.5, 0.5))
        self.w2 = nn.Parameter(torch.empty(hidden, channels).uniform_(-0.5, 0.5))

    def normalised(self) -> torch.Tensor:
        return self.c / self.c.norm(dim=0, keepdim=True).clamp_min(1e-12)

    def scores(self, f: torch.Tensor, c_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = f @ c_hat
        s_n = (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)) @ c_hat
        return s, s_n

    def reconstruct(self, f: torch.Tensor, threshold: float, keep: torch.Tensor | None = None) -> torch.Tensor:
        c_hat = self.normalised()
        w1 = self.w1
        if keep is not None:
            c_hat, w1 = c_hat[:, keep], w1[keep]
        s, s_n = self.scores(f, c_hat)
        v0 = s * (s_n > threshold)
        v = v0 / (v0.sum(dim=-1, keepdim=True) + 1e-3)
        return torch.relu(v @ w1) @ self.w2


class TopicModel:
    """``fit(batches, head)``: learn topics on maps (B, H, W, C) with integer labels through a frozen
    ``head`` (channels-last maps -> logits). Fitted: ``topics_`` (C x m', column-normalised, after
    dropping near-duplicates), ``g_`` (W₁, W₂), ``kept_`` (indices of the kept topics), ``history_``.
    """

    def __init__(self, n_topics: int = 70, lambda1: float = 10.0, lambda2: float = 10.0, top_k: int = 2,
                 threshold: float = 0.0, epochs: int = 10, lr: float = 1e-3, batch_size: int = 256, seed: int = 0,
                 hidden: int = 500, duplicate_cosine: float = 0.95, device: str = "auto") -> None:
        self.n_topics, self.lambda1, self.lambda2, self.top_k = n_topics, lambda1, lambda2, top_k
        self.threshold, self.epochs, self.lr, self.batch_size = threshold, epochs, lr, batch_size
        self.seed, self.hidden, self.duplicate_cosine, self.device = seed, hidden, duplicate_cosine, device

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in TOPIC_DEFAULTS}

    def _check(self) -> None:
        for name in ("n_topics", "top_k", "epochs", "batch_size", "hidden"):
            if int(getattr(self, name)) < 1:
                raise InterpretError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InterpretError(f"lr must be > 0, got {self.lr}")

    def fit(self, batches: Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]], head: nn.Module,
            channels: int) -> TopicModel:
        """``batches(epoch)`` yields (maps (B, H, W, C), labels (B,)) minibatches for that epoch."""
        self._check()
        torch.manual_seed(self.seed)
        dev = resolve_device(self.device)
        net = _Topics(channels, self.n_topics, self.hidden).to(dev)
        head = head.to(dev).eval()
        for p in head.parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        eye = torch.eye(self.n_topics, device=dev)
        self.history_: list[dict[str, float]] = []
        for epoch in range(self.epochs):
            total, correct, count = 0.0, 0, 0
            for maps, labels in batches(epoch):
                f = to_device(np.asarray(maps), dev, torch.float32)
                y = to_device(np.asarray(labels, np.int64), dev)
                if not torch.isfinite(f).all():
                    raise InterpretError("maps hold NaN or Inf")
                c_hat = net.normalised()
                _, s_n = net.scores(f, c_hat)
                logits = head(net.reconstruct(f, self.threshold))
                k = min(self.top_k, s_n[..., 0].numel())
                topk = s_n.reshape(-1, self.n_topics).topk(k, dim=0).values.mean(dim=0)
                loss = (nn.functional.cross_entropy(logits, y) - self.lambda1 * topk.mean()
                        + self.lambda2 * (c_hat.T @ c_hat - eye).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                count += len(y)
            if count == 0:
                raise InterpretError("no training rows: the selection is empty")
            self.history_.append({"epoch": epoch, "loss": total / count, "completeness": correct / count})
        with torch.no_grad():
            c_hat = net.normalised()
            kept: list[int] = []
            for j in range(self.n_topics):  # drop topics too close to an earlier kept one
                if all(float(c_hat[:, j] @ c_hat[:, i]) <= self.duplicate_cosine for i in kept):
                    kept.append(j)
        self._net, self._head = net.cpu(), head.cpu()
        self.kept_ = np.array(kept, np.int64)
        self.topics_ = c_hat[:, kept].cpu().numpy()
        self.g_ = (net.w1.detach()[kept].numpy(), net.w2.detach().numpy())
        return self

    def fit_arrays(self, maps: np.ndarray, labels: np.ndarray, head: nn.Module) -> TopicModel:
        """In memory: shuffled minibatches of ``maps`` (N, H, W, C) each epoch."""
        maps, labels = np.asarray(maps, np.float32), np.asarray(labels)

        def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(maps))
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                yield maps[idx], labels[idx]

        return self.fit(batches, head, maps.shape[-1])

    def _fitted(self) -> None:
        if not hasattr(self, "topics_"):
            raise InterpretError("the topic model is not fitted yet: call fit first")

    def maps(self, A: np.ndarray) -> np.ndarray:
        """Topic maps Z: the cosine of each position with each kept topic, (N, H, W, m')."""
        self._fitted()
        f = torch.as_tensor(np.asarray(A, np.float32))
        with torch.no_grad():
            return self._net.scores(f, torch.as_tensor(self.topics_))[1].numpy()

    def predict(self, A: np.ndarray) -> np.ndarray:
        """Classes the frozen head gives on the topic reconstruction g(v(A))."""
        self._fitted()
        keep = torch.as_tensor(self.kept_)
        with torch.no_grad():
            f = torch.as_tensor(np.asarray(A, np.float32))
            return self._head(self._net.reconstruct(f, self.threshold, keep)).argmax(1).numpy()

    def completeness(self, A: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy of head(g(v(A))) against ``y`` (the reference's completeness accuracy)."""
        return float((self.predict(A) == np.asarray(y)).mean())
