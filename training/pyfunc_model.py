"""The pyfunc logged for every version: booster + Platt calibration + encoding, as probabilities.

Kept tiny and free of MLflow-side state so `mlflow.pyfunc.load_model("models:/credit-pd@champion")`
(or Spark's `spark_udf`) gives exactly `training.registry.load_model(...).predict_proba`.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd


class CalibratedPyfunc(mlflow.pyfunc.PythonModel):
    """predict(DataFrame of the model's input columns) -> calibrated probabilities (float64)."""

    def load_context(self, context) -> None:
        from training.registry import model_from_files

        self._model, _ = model_from_files(context.artifacts["booster"], context.artifacts["meta"])

    # a DataFrame hint: MLflow leaves validation to the logged signature (and stops warning)
    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self._model.predict_proba(model_input)
