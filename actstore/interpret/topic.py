"""Topic-based concepts with completeness (Yeh et al., NeurIPS 2020), reference §3.

Topics c (C x m) are learned jointly over all classes so that the maps, projected onto the
column-normalised topics, truncated and reconstructed by a bias-free network g, still give the
right class through the model's frozen head h:

    ĉ = c / ||c||_col,  s = f·ĉ,  s_n = (f / ||f||_chan)·ĉ,  v₀ = s ⊙ 1[s_n > β],
    v = v₀ / (Σ_topics v₀ + 1e-3),  f̂ = ReLU(v W₁) W₂,  logits = h(f̂)
    L = CE(y, logits) − λ₁ · mean_j(mean of the top-K s_n[:, j] over the batch's positions)
        + λ₂ · mean_{j,k}(ĉᵀĉ − I)

Adam; every learned matrix starts U(−0.5, 0.5) from ``random_state`` (a local generator: the
caller's global torch RNG is untouched); topics with cosine > 0.95 to an earlier one are dropped
after training. Stochastic: the initialisation and the minibatch order depend on ``random_state``.

Training length: ``training="epochs"`` runs ``epochs`` passes over the rows (the reference's
protocol); ``training="steps"`` runs ``steps`` optimiser steps whatever the number of rows, so a
small coreset is not also an undertrained one (the store-level driver sets ``steps`` to what the
full data gets in ``epochs`` epochs).

Convergence (a plateau rule on the training loss): with w = ⌈10 %⌉ of the steps taken, the fit has
converged when the mean loss of the last w steps differs from the mean of the w steps before by at
most ``tol`` · max(1, |that mean|). The means are over rows (each step's loss weighted by its batch's
rows), so the short last batch of an epoch over a small coreset does not pass for a trend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ..device import resolve_device, to_device
from ..errors import InterpretError, NotFittedError, ParameterError
from ..params import Integral, Interval, Real, StrOptions, validate
from .inputs import checked_array, class_labels

__all__ = ["TopicModel", "plateau"]

Batches = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]]  # epoch -> (maps (B, H, W, C), labels (B,))


class _Topics(nn.Module):
    def __init__(self, channels: int, n_topics: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-0.5, 0.5, generator=generator))
        self.c = uniform(channels, n_topics)
        self.w1 = uniform(n_topics, hidden)
        self.w2 = uniform(hidden, channels)

    def normalised(self) -> torch.Tensor:
        return self.c / self.c.norm(dim=0, keepdim=True).clamp_min(1e-12)

    @staticmethod
    def scores(f: torch.Tensor, c_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = f @ c_hat
        s_n = (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)) @ c_hat
        return s, s_n

    @staticmethod
    def reconstruct_with(f: torch.Tensor, c_hat: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                         threshold: float, scores: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """g(v(f)): truncated, normalised topic scores through the bias-free network (``scores``: (s, s_n)
        of ``f`` when already computed)."""
        s, s_n = scores if scores is not None else _Topics.scores(f, c_hat)
        v0 = s * (s_n > threshold)
        v = v0 / (v0.sum(dim=-1, keepdim=True) + 1e-3)
        return torch.relu(v @ w1) @ w2


def reconstruct(maps: np.ndarray, topics: np.ndarray, w1: np.ndarray, w2: np.ndarray, threshold: float) -> np.ndarray:
    """g(v(A)) for channels-last maps from saved topic features (column-normalised ``topics``, g's W₁ W₂)."""
    with torch.no_grad():
        f = torch.as_tensor(np.asarray(maps, np.float32))
        return _Topics.reconstruct_with(f, torch.as_tensor(topics), torch.as_tensor(w1), torch.as_tensor(w2),
                                        threshold).numpy()


def topic_maps(maps: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Z: the cosine of each position of ``maps`` (..., C) with each topic (C x m)."""
    A = np.asarray(maps, np.float32)
    return (A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)) @ np.asarray(topics, np.float32)


def _as_maps(X: Any) -> np.ndarray:
    """Channels-last maps (N, H, W, C) float32; rows (N, C) are 1 x 1 maps."""
    A = checked_array(X, "TopicModel (maps (N, H, W, C) or rows (N, C))", allow_nd=True, dtype=(np.float32,))
    if A.ndim == 2:
        return A[:, None, None, :]
    if A.ndim != 4:
        raise InterpretError(f"the topic model takes maps (N, H, W, C) or rows (N, C), got shape {A.shape}")
    return A


def plateau(losses: list[float], tol: float, rows: list[int] | None = None) -> bool:
    """The module's plateau rule: the last ⌈10 %⌉ of the steps' mean loss is within ``tol`` of the mean
    before, each step weighted by its batch's ``rows`` (equal weights when not given)."""
    w = max(1, -(-len(losses) // 10))
    if len(losses) < 2 * w:
        return False
    weights = np.ones(len(losses)) if rows is None else np.asarray(rows, np.float64)
    last = float(np.average(losses[-w:], weights=weights[-w:]))
    before = float(np.average(losses[-2 * w:-w], weights=weights[-2 * w:-w]))
    return abs(last - before) <= tol * max(1.0, abs(before))


@contextlib.contextmanager
def _frozen(head: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``head`` in eval mode on ``device`` without parameter gradients; its flags, mode and device restored after."""
    flags = [p.requires_grad for p in head.parameters()]
    first = next(head.parameters(), None)
    home, training = (first.device if first is not None else torch.device("cpu")), head.training
    try:
        for p in head.parameters():
            p.requires_grad_(False)
        yield head.to(device).eval()
    finally:
        head.to(home).train(training)
        for p, flag in zip(head.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class TopicModel(BaseEstimator):
    """``fit(X, y)`` (maps (N, H, W, C), labels) or ``fit_batches(batches, channels)``: learn topics through the
    frozen ``head`` (channels-last maps -> logits). Fitted: ``topics_`` (C x m', column-normalised, after
    dropping near-duplicates), ``g_`` (W₁, W₂), ``kept_`` (indices of the kept topics), ``history_`` (per
    epoch), ``loss_curve_`` and ``batch_rows_`` (per step: the loss, the batch's rows), ``n_iter_``
    (optimiser steps), ``converged_`` (the plateau rule), ``n_features_in_`` (C).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "head": [nn.Module, None],
        **{k: [Interval(Integral, 1, None, closed="left")] for k in ("n_topics", "top_k", "epochs", "batch_size",
                                                                     "hidden")},
        "steps": [Interval(Integral, 1, None, closed="left"), None],
        "training": [StrOptions({"epochs", "steps"})],
        "lambda1": [Interval(Real, 0, None, closed="left")],
        "lambda2": [Interval(Real, 0, None, closed="left")],
        "threshold": [Interval(Real, -1, 1, closed="both")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "duplicate_cosine": [Interval(Real, -1, 1, closed="both")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "device": [str],
    }

    def __init__(self, head: nn.Module | None = None, n_topics: int = 70, lambda1: float = 10.0,
                 lambda2: float = 10.0, top_k: int = 2, threshold: float = 0.0, epochs: int = 10,
                 training: str = "epochs", steps: int | None = None, lr: float = 1e-3, batch_size: int = 256,
                 hidden: int = 500, duplicate_cosine: float = 0.95, tol: float = 1e-2, random_state: int = 0,
                 device: str = "auto") -> None:
        self.head = head
        self.n_topics = n_topics
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.top_k = top_k
        self.threshold = threshold
        self.epochs = epochs
        self.training = training
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.hidden = hidden
        self.duplicate_cosine = duplicate_cosine
        self.tol = tol
        self.random_state = random_state
        self.device = device

    def _check(self) -> None:
        validate(self._parameter_constraints, self.get_params(deep=False), "TopicModel")
        if self.head is None:
            raise ParameterError("the topic model needs the model's frozen head (head=...): "
                                 "channels-last maps -> logits")
        if self.training == "steps" and self.steps is None:
            raise ParameterError("training='steps' needs steps=N (the store-level driver sets it from the full data)")

    def fit(self, X: np.ndarray, y: np.ndarray) -> TopicModel:
        """In memory: shuffled minibatches of ``X`` (maps (N, H, W, C), or (N, C) as 1 x 1 maps) with labels ``y``."""
        self._check()
        maps = _as_maps(X)
        labels = class_labels(y, len(maps), "TopicModel")

        def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            order = np.random.default_rng([self.random_state, epoch]).permutation(len(maps))
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                yield maps[idx], labels[idx]

        return self.fit_batches(batches, maps.shape[-1])

    def fit_batches(self, batches: Batches, channels: int, on_step: Callable[[], None] | None = None) -> TopicModel:
        """Learn from ``batches(epoch)``, a fresh pass of (maps, labels) minibatches per epoch; ``on_step()`` is
        called after each optimiser step (progress)."""
        self._check()
        dev = resolve_device(self.device)
        net = _Topics(channels, self.n_topics, self.hidden,
                      torch.Generator().manual_seed(int(self.random_state))).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        losses: list[float] = []
        self.batch_rows_: list[int] = []
        self.history_: list[dict[str, float]] = []
        budget = self.steps if self.training == "steps" else None
        with _frozen(self.head, dev) as head:
            epoch = 0
            while (budget is None and epoch < self.epochs) or (budget is not None and len(losses) < budget):
                self._epoch(net, head, opt, batches(epoch), dev, losses, budget, on_step)
                epoch += 1
        self.n_iter_ = len(losses)
        self.loss_curve_ = np.asarray(losses)
        self.batch_rows_ = np.asarray(self.batch_rows_, np.int64)
        self.converged_ = plateau(losses, self.tol, self.batch_rows_)
        self.n_features_in_ = int(channels)
        self._keep(net.cpu())
        return self

    def _epoch(self, net: _Topics, head: nn.Module, opt: torch.optim.Optimizer, batches: Iterable[Any],
               dev: torch.device, losses: list[float], budget: int | None, on_step: Callable[[], None] | None) -> None:
        eye = torch.eye(self.n_topics, device=dev)
        total, correct, count, first = 0.0, 0, 0, len(losses)
        for maps, labels in batches:
            if budget is not None and len(losses) >= budget:
                break
            maps = np.asarray(maps)
            if not np.isfinite(maps).all():
                raise InterpretError("maps hold NaN or Inf")
            f = to_device(maps, dev, torch.float32)
            y = to_device(np.asarray(labels, np.int64), dev)
            c_hat = net.normalised()
            s, s_n = net.scores(f, c_hat)
            logits = head(net.reconstruct_with(f, c_hat, net.w1, net.w2, self.threshold, (s, s_n)))
            k = min(self.top_k, s_n[..., 0].numel())
            topk = s_n.reshape(-1, self.n_topics).topk(k, dim=0).values.mean(dim=0)
            loss = (nn.functional.cross_entropy(logits, y) - self.lambda1 * topk.mean()
                    + self.lambda2 * (c_hat.T @ c_hat - eye).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            self.batch_rows_.append(len(y))
            if on_step is not None:
                on_step()
            total += losses[-1] * len(y)
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
        if count == 0:
            raise InterpretError("no training rows: the selection is empty")
        self.history_.append({"epoch": len(self.history_), "steps": len(losses) - first, "loss": total / count,
                              "completeness": correct / count})

    def _keep(self, net: _Topics) -> None:
        """Drop topics too close to an earlier kept one; keep the rest and g."""
        with torch.no_grad():
            c_hat = net.normalised()
            kept: list[int] = []
            for j in range(self.n_topics):
                if all(float(c_hat[:, j] @ c_hat[:, i]) <= self.duplicate_cosine for i in kept):
                    kept.append(j)
            self.kept_ = np.array(kept, np.int64)
            self.topics_ = c_hat[:, kept].numpy()
            self.g_ = (net.w1.detach()[kept].numpy(), net.w2.detach().numpy())

    def _fitted(self, A: Any) -> np.ndarray:
        if not hasattr(self, "topics_"):
            raise NotFittedError("the topic model is not fitted yet: call fit first")
        maps = _as_maps(A)
        if maps.shape[-1] != self.n_features_in_:
            raise InterpretError(f"X has {maps.shape[-1]} features, but TopicModel is expecting "
                                 f"{self.n_features_in_} features as input")
        return maps

    def maps(self, A: np.ndarray) -> np.ndarray:
        """Topic maps Z: the cosine of each position with each kept topic, (N, H, W, m')."""
        return topic_maps(self._fitted(A), self.topics_)

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """g(v(A)) through the kept topics: what the head sees (channels-last maps)."""
        return reconstruct(self._fitted(A), self.topics_, *self.g_, self.threshold)

    def predict(self, A: np.ndarray) -> np.ndarray:
        """Classes the frozen head gives on the topic reconstruction g(v(A))."""
        recon = self.reconstruct(A)
        if self.head is None:
            raise ParameterError("the topic model needs its head to predict (head=...)")
        with torch.no_grad():
            return self.head(torch.as_tensor(recon)).argmax(1).numpy()

    def completeness(self, A: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy of head(g(v(A))) against ``y`` (the reference's completeness accuracy)."""
        return float((self.predict(A) == np.asarray(y)).mean())
