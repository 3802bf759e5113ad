"""The topic model recovers planted topics through a known head; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actstore.interpret import InterpretError
from actstore.interpret.topic import TopicModel


class MeanLinear(nn.Module):
    """A known head: average over positions, then a fixed linear map (channels-last input)."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.lin.weight.data = torch.as_tensor(weight, dtype=torch.float32)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.lin(f.mean(dim=(1, 2)))


def planted(seed: int = 0, n: int = 600, channels: int = 12, topics: int = 3):
    rng = np.random.default_rng(seed)
    T = np.abs(rng.standard_normal((topics, channels)))
    T[np.arange(topics)[:, None], rng.permutation(channels)[:topics * 4].reshape(topics, 4)] += 3.0
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    y = rng.integers(0, topics, n)
    maps = np.abs(rng.normal(0, 0.05, (n, 4, 4, channels)))
    present = rng.random((n, 4, 4)) < 0.5
    maps += present[..., None] * rng.uniform(0.5, 1.5, (n, 4, 4, 1)) * T[y][:, None, None, :]
    return maps.astype(np.float32), y, T


def test_recovers_planted_topics_and_is_complete():
    maps, y, T = planted()
    head = MeanLinear(T * 10)
    model = TopicModel(n_topics=3, lambda1=1.0, lambda2=0.1, top_k=8, threshold=0.2, epochs=40, lr=1e-2,
                       batch_size=64, hidden=32).fit_arrays(maps, y, head)
    cos = T @ model.topics_  # planted x learned
    assert cos.max(axis=1).min() > 0.95, cos  # planted topics overlap (cosines 0.25-0.45)
    assert model.completeness(maps, y) > 0.9
    Z = model.maps(maps)
    assert Z.shape == (600, 4, 4, len(model.kept_)) and np.abs(Z).max() <= 1 + 1e-5
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]


def test_duplicate_topics_are_dropped():
    maps, y, T = planted(1)
    model = TopicModel(n_topics=6, epochs=1, batch_size=128, hidden=8, duplicate_cosine=-1.0)
    model.fit_arrays(maps, y, MeanLinear(T))
    assert model.kept_.tolist() == [0] and model.topics_.shape == (12, 1)


def test_bad_input():
    maps, y, T = planted(2, n=20)
    with pytest.raises(InterpretError, match="n_topics must be >= 1"):
        TopicModel(n_topics=0).fit_arrays(maps, y, MeanLinear(T))
    with pytest.raises(InterpretError, match="not fitted"):
        TopicModel().maps(maps)
    bad = maps.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InterpretError, match="NaN"):
        TopicModel(n_topics=2, epochs=1, hidden=4).fit_arrays(bad, y, MeanLinear(T))
