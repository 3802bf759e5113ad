"""scikit-learn's own estimator checks on the three interpreters (the estimator contract: clone, get/set
params, nothing set in __init__, default-constructible, fit idempotent, n_features_in_, input validation...).

Checks that do not apply are listed with why. The topic model runs them with a parameter-free head (any
channel count maps to 10 logits): its real head is the frozen rest of a network, which the checks' random
2-D data cannot have; 2-D rows are 1 x 1 maps."""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from actstore.interpret import ICE, VEBI, TopicModel


class AnyWidthHead(nn.Module):
    """Logits = the spatial means of the first 10 channels (zero-padded): no parameters, any width."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        m = f.mean(dim=(1, 2))
        return nn.functional.pad(m, (0, max(0, 10 - m.shape[-1])))[..., :10]


SKIPPED = {
    "TopicModel": {
        "check_estimators_unfitted": "predict before fit raises actstore.errors.NotFittedError (ValueError and "
                                     "AttributeError, like sklearn's, but an ActstoreError so the CLI prints one "
                                     "line); the check wants sklearn's own class",
    },
}


@parametrize_with_checks([ICE(n_components=2, max_iter=30), VEBI(mu=0.5),
                          TopicModel(AnyWidthHead(), n_topics=3, epochs=2, hidden=8, batch_size=16, device="cpu")],
                         expected_failed_checks=lambda est: SKIPPED.get(type(est).__name__, {}))
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@pytest.mark.parametrize("cls", [ICE, VEBI, TopicModel])
def test_defaults_live_in_the_signature_and_the_registry_reads_them(cls):
    from actstore.interpret import get_interpreter

    name = {"ICE": "ice", "VEBI": "vebi", "TopicModel": "topic"}[cls.__name__]
    params = cls().get_params()
    defaults = get_interpreter(name).defaults()
    assert all(defaults[k] == v for k, v in params.items() if k != "head")
