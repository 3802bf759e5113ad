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
    model = TopicModel(head, n_topics=3, lambda1=1.0, lambda2=0.1, top_k=8, threshold=0.2, epochs=40, lr=1e-2,
                       batch_size=64, hidden=32).fit(maps, y)
    cos = T @ model.topics_  # planted x learned
    assert cos.max(axis=1).min() > 0.95, cos  # planted topics overlap (cosines 0.25-0.45)
    assert model.completeness(maps, y) > 0.9
    Z = model.maps(maps)
    assert Z.shape == (600, 4, 4, len(model.kept_)) and np.abs(Z).max() <= 1 + 1e-5
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]


def test_duplicate_topics_are_dropped():
    maps, y, T = planted(1)
    model = TopicModel(MeanLinear(T), n_topics=6, epochs=1, batch_size=128, hidden=8, duplicate_cosine=-1.0)
    model.fit(maps, y)
    assert model.kept_.tolist() == [0] and model.topics_.shape == (12, 1)


def test_bad_input():
    maps, y, T = planted(2, n=20)
    with pytest.raises(InterpretError, match="'n_topics' parameter of TopicModel must be an int in the range"):
        TopicModel(MeanLinear(T), n_topics=0).fit(maps, y)
    with pytest.raises(InterpretError, match="needs the model's frozen head"):
        TopicModel().fit(maps, y)
    with pytest.raises(InterpretError, match="'training' parameter of TopicModel must be a str among"):
        TopicModel(MeanLinear(T), training="minutes").fit(maps, y)
    with pytest.raises(InterpretError, match="training='steps' needs steps=N"):
        TopicModel(MeanLinear(T), training="steps").fit(maps, y)
    with pytest.raises(InterpretError, match="not fitted"):
        TopicModel().maps(maps)
    bad = maps.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InterpretError, match="NaN"):
        TopicModel(MeanLinear(T), n_topics=2, epochs=1, hidden=4).fit(bad, y)


def test_steps_training_gives_every_size_the_same_optimiser_steps_and_records_convergence():
    maps, y, T = planted(3, n=400)
    head = MeanLinear(T * 10)
    settings = dict(n_topics=3, lambda1=1.0, lambda2=0.1, top_k=8, threshold=0.2, lr=1e-2, batch_size=32, hidden=16)
    full = TopicModel(head, epochs=3, **settings).fit(maps, y)
    assert full.n_iter_ == 3 * 13  # 3 epochs of ceil(400 / 32) steps
    small = TopicModel(head, epochs=3, **settings).fit(maps[:40], y[:40])
    assert small.n_iter_ == 3 * 2  # epochs: a 10 % subset gets a tenth of the steps
    steps = TopicModel(head, training="steps", steps=full.n_iter_, **settings).fit(maps[:40], y[:40])
    assert steps.n_iter_ == full.n_iter_ and len(steps.history_) == -(-full.n_iter_ // 2)
    long = TopicModel(head, epochs=40, **settings).fit(maps, y)
    assert long.converged_ and not TopicModel(head, epochs=1, **settings).fit(maps, y).converged_


def test_plateau_rule():
    from actstore.interpret.topic import plateau

    assert plateau([5.0] * 20, 1e-2)
    assert not plateau(list(np.linspace(5, 1, 20)), 1e-2)  # still falling
    assert not plateau([1.0], 1e-2)  # too short to tell
    assert plateau([*np.linspace(5, 1, 16), 1.0, 1.0, 1.0, 1.0], 1e-2)  # the last two steps against the two before
    # An epoch's short last batch (2 rows here) weighs what its rows weigh, not what a full batch does.
    losses, rows = [1.0] * 19 + [1.5], [64] * 19 + [2]
    assert not plateau(losses, 2e-2) and plateau(losses, 2e-2, rows)


def test_fit_leaves_the_global_torch_rng_and_the_head_alone():
    maps, y, T = planted(4, n=60)
    head = MeanLinear(T)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = TopicModel(head, n_topics=2, epochs=1, hidden=4, random_state=5).fit(maps, y)
    assert torch.equal(torch.rand(3), expected)
    assert all(p.requires_grad for p in head.parameters()) and head.training
    b = TopicModel(head, n_topics=2, epochs=1, hidden=4, random_state=5).fit(maps, y)
    np.testing.assert_array_equal(a.topics_, b.topics_)  # the seed alone decides
    c = TopicModel(head, n_topics=2, epochs=1, hidden=4, random_state=6).fit(maps, y)
    assert not np.array_equal(a.topics_, c.topics_)
