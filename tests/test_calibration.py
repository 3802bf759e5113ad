"""The calibration behind --estimate says when it cannot be trusted (the rest is in test_estimate.py, slow)."""

from __future__ import annotations

import pytest


def test_a_calibration_made_on_a_busy_machine_says_so():
    """Before: a calibration measured beside another job was cached and gave estimates 100x too high, silently."""
    from actstore.evaluate.calibrate import busy_warning

    cal = {"machine": {"cores": 2}, "load": 0.2, "models": {"m|32|1|1": {"load": 0.4}}}
    assert busy_warning(cal, [cal["models"]["m|32|1|1"]]) is None
    cal["models"]["m|32|1|1"]["load"] = 1.5
    line = busy_warning(cal, [cal["models"]["m|32|1|1"]])
    assert "busy while it was calibrated (load 1.5 on 2 cores)" in line and "--recalibrate" in line
    assert busy_warning({"machine": {"cores": 2}, "models": {}}, []) is None  # older calibrations: no load known


def _shapes():
    from actstore.interpret.base import Shapes

    return Shapes(class_rows=[300, 200], height=2, width=3, channels=8, units=10, n_rows=500)


def test_topic_cost_is_steps_times_the_measured_step_plus_what_it_streams():
    """Restated by hand: steps from the training rule; every pass decompresses the chunks a selection touches
    (here one chunk of all 500 rows), once when the selection fits the buffer, at every epoch's worth of steps
    when it does not."""
    from actstore.interpret.base import get_interpreter

    topic = get_interpreter("topic")
    costs = {"topic_step_s": 0.5, "topic_stream_s_per_MB": 2.0, "topic_reread_s_per_MB": 0.25}
    params = {**topic.defaults(), "batch_size": 64, "epochs": 3, "training": "steps", "buffer_rows": 100}
    chunk_MB = 500 * 2 * 2 * 3 * 8 / 1e6
    small, full = [30, 20], [300, 200]  # a coreset that fits the buffer (read once), the full data (streamed)
    steps = 3 * -(-500 // 64)  # "steps": every target gets the full data's steps
    seconds, _, _ = topic.fit_cost(_shapes(), [small, full], params, costs)
    assert seconds == pytest.approx(2 * steps * 0.5 + (1 + steps * 64 / 500) * chunk_MB * 2.0)
    params["training"] = "epochs"
    seconds, _, _ = topic.fit_cost(_shapes(), [small, full], params, costs)
    full_steps = 3 * (-(-500 // 64) + 4)  # a short batch at each of the 5 buffer refills
    assert seconds == pytest.approx((3 * 1 + full_steps) * 0.5 + (1 + full_steps * 64 / 500) * chunk_MB * 2.0)
    params["steps"] = 7  # only "steps" training takes a step budget
    assert topic.fit_cost(_shapes(), [small, full], params, costs)[0] == pytest.approx(seconds)


def test_a_sparse_selection_is_decompressed_once_then_reread():
    """A 150-row selection of 500 in one 4096-row chunk: one pass decompresses the chunk (500 rows); the other
    passes read its 150 rows back from the compact copy."""
    from actstore.interpret.base import get_interpreter

    topic = get_interpreter("topic")
    costs = {"topic_step_s": 0.5, "topic_stream_s_per_MB": 2.0, "topic_reread_s_per_MB": 0.25}
    params = {**topic.defaults(), "batch_size": 64, "epochs": 3, "training": "steps", "buffer_rows": 100}
    row_MB = 2 * 2 * 3 * 8 / 1e6
    steps = 3 * -(-500 // 64)
    passes = steps * 64 / 150
    seconds, _, _ = topic.fit_cost(_shapes(), [[100, 50]], params, costs)
    assert seconds == pytest.approx(steps * 0.5 + 500 * row_MB * 2.0 + (passes - 1) * 150 * row_MB * 0.25)


def test_ice_cost_runs_to_max_iter():
    from actstore.interpret.base import get_interpreter

    ice = get_interpreter("ice")
    params = {**ice.defaults(), "memory_limit": 2**30}
    costs = {"ice_s_per_elem_iter": 1e-9}
    one = ice.fit_cost(_shapes(), [[300, 200]], {**params, "max_iter": 100}, costs)[0]
    assert ice.fit_cost(_shapes(), [[300, 200]], {**params, "max_iter": 200}, costs)[0] == pytest.approx(2 * one)


def test_interpreter_costs_are_measured_once_per_model_and_cost_parameters(tmp_path, monkeypatch):
    from actstore.evaluate import calibrate
    from actstore.interpret.base import get_interpreter

    monkeypatch.setenv("ACTSTORE_HOME", str(tmp_path))
    topic = get_interpreter("topic")
    calls = []
    monkeypatch.setattr(calibrate, "_model_parts", lambda *a: (None, (2, 2, 4), None))
    monkeypatch.setattr(type(topic), "measure_costs", lambda self, head, shape, n, params: calls.append(
        (shape, params["batch_size"])) or {"topic_step_s": 1.0})

    class Loaded:
        builder, input_size, num_classes = "resnet18", 32, 3

    cal = {"models": {}}
    params = topic.defaults()
    assert calibrate.interpreter_costs(cal, Loaded(), ["layer4"], True, topic, params)["topic_step_s"] == 1.0
    calibrate.interpreter_costs(cal, Loaded(), ["layer4"], True, topic, {**params, "lr": 0.5})  # not a cost param
    assert calls == [((2, 2, 4), 256)]
    calibrate.interpreter_costs(cal, Loaded(), ["layer4"], True, topic, {**params, "batch_size": 32})
    assert calls[-1] == ((2, 2, 4), 32) and len(cal["models"]) == 2
    assert (tmp_path / calibrate.CALIBRATION_FILE).exists()
    assert calibrate.interpreter_costs(cal, Loaded(), ["layer4"], True, get_interpreter("ice"), {}) == {}
