"""The calibration behind --estimate says when it cannot be trusted (the rest is in test_estimate.py, slow)."""

from __future__ import annotations


def test_a_calibration_made_on_a_busy_machine_says_so():
    """Before: a calibration measured beside another job was cached and gave estimates 100x too high, silently."""
    from actstore.evaluate.calibrate import busy_warning

    cal = {"machine": {"cores": 2}, "load": 0.2, "models": {"m|32|1|1": {"load": 0.4}}}
    assert busy_warning(cal, ["m|32|1|1"]) is None
    cal["models"]["m|32|1|1"]["load"] = 1.5
    line = busy_warning(cal, ["m|32|1|1"])
    assert "busy while it was calibrated (load 1.5 on 2 cores)" in line and "--recalibrate" in line
    assert busy_warning({"machine": {"cores": 2}, "models": {}}, []) is None  # older calibrations: no load known
