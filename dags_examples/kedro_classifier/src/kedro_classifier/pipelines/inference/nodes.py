"""Node functions of the inference pipeline.

Only pandas/numpy here: these functions run inside the served MLflow model for every request, so they avoid work a
fitted object already did and accept what MLflow hands a pyfunc (a DataFrame, or a numpy array).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def scale(instances: pd.DataFrame | np.ndarray, scaler: Any) -> pd.DataFrame:
    """Standardise ``instances`` with the fitted ``scaler``, keeping the row index.

    A numpy array gets the column names the scaler was fitted on, so a model served from an array input gives the
    same predictions as from a DataFrame (and sklearn does not warn about missing feature names).
    """
    if isinstance(instances, pd.DataFrame):
        frame = instances[list(scaler.feature_names_in_)]
    else:
        frame = pd.DataFrame(np.asarray(instances), columns=list(scaler.feature_names_in_))
    return pd.DataFrame(scaler.transform(frame), index=frame.index, columns=frame.columns)


def predict(scaled_instances: pd.DataFrame, classifier: Any, threshold: float) -> pd.DataFrame:
    """Return the probability of the positive class and the 0/1 decision at ``threshold`` for every row.

    The threshold is a parameter, not baked into the classifier, so it can be tuned per run (and overridden per
    request when the model is served) without refitting.
    """
    probability = classifier.predict_proba(scaled_instances.to_numpy())[:, 1]
    return pd.DataFrame(
        {"probability": probability, "prediction": (probability >= float(threshold)).astype("int64")},
        index=scaled_instances.index,
    )
