"""The report's plain sentences follow the stored numbers (``explain`` is pure)."""

from __future__ import annotations

from dropkit.lab.experiments import eval_mode


def _eval_mode(control_cost: float, input_p: float) -> str:
    r = {"accuracy_cost": 0.026, "control_cost": control_cost, "control_se": 0.001,
         "input_p": input_p, "rows": []}
    return eval_mode.explain(r)[0]


def test_eval_mode_names_the_controls_own_loss() -> None:
    """The control "is unaffected" was said of a p = 0 net whose input dropout stayed on
    and cost it 0.7 points (Fashion-MNIST --full)."""
    assert "loses 0.7%" in _eval_mode(0.007, 0.2)
    assert "is unaffected" in _eval_mode(0.0, 0.0)
    assert "is unaffected" in _eval_mode(0.001, 0.2)  # within 2 SE of none
