"""Monte-Carlo dropout: reproducible stochastic passes, uncertainty and calibration.

Three small modules: ``predict`` (:func:`mc_predict`), ``uncertainty`` (entropies, BALD,
variance) and ``calibration`` (NLL, Brier, ECE).


:func:`mc_predict` runs ``T`` stochastic forward passes with only the dropout layers
sampling (:func:`dropkit.modes.mc_mode`). Draw ``t`` is a pure function of ``(seed, t)``:
row ``b`` of every dropkit mask of the pass is keyed by ``(seed, t, b, call index)`` (see
``dropkit.keys``), so a loop, a fold of all samples into the batch, and any
chunking give bit-identical masks.

From the samples (class probabilities ``[T, B, C]``), with :math:`\\bar p = \\frac1T\\sum_t p_t`:

- predictive entropy :math:`H[\\bar p] = -\\sum_c \\bar p_c \\log \\bar p_c`
- expected entropy :math:`\\frac1T \\sum_t H[p_t]`
- mutual information (BALD) :math:`H[\\bar p] - \\frac1T \\sum_t H[p_t] \\ge 0`

and calibration (NLL, Brier score, ECE) of the MC mean versus one deterministic pass.

Papers: Gal & Ghahramani 2016, "Dropout as a Bayesian approximation"; Houlsby et al. 2011,
"Bayesian active learning for classification and preference learning" (BALD); Brier 1950,
"Verification of forecasts expressed in terms of probability"; Guo et al. 2017, "On
calibration of modern neural networks" (ECE); Naeini et al. 2015 (ECE binning).
"""

from __future__ import annotations

from dropkit.mc.calibration import (
    Calibration,
    CalibrationReport,
    brier_score,
    calibration_report,
    expected_calibration_error,
    negative_log_likelihood,
)
from dropkit.mc.predict import mc_predict
from dropkit.mc.uncertainty import (
    expected_entropy,
    mutual_information,
    predictive_entropy,
    predictive_mean,
    variance,
)

__all__ = [
    "Calibration",
    "CalibrationReport",
    "brier_score",
    "calibration_report",
    "expected_calibration_error",
    "expected_entropy",
    "mc_predict",
    "mutual_information",
    "negative_log_likelihood",
    "predictive_entropy",
    "predictive_mean",
    "variance",
]
