"""Node functions of the training pipeline."""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

TARGET = "target"


def load_raw_data() -> pd.DataFrame:
    """Return scikit-learn's shipped breast-cancer table (569 rows, 30 features + ``target``; no download).

    Column names get underscores instead of spaces so they are easy to type in JSON payloads and Spark schemas.
    """
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    return frame


def split_data(
    raw_data: pd.DataFrame, test_size: float, random_state: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split into training ``instances``/``labels`` and held-out test rows, stratified on the target."""
    features = raw_data.drop(columns=[TARGET])
    labels = raw_data[[TARGET]]
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=float(test_size), random_state=int(random_state), stratify=labels[TARGET]
    )
    return train_x, test_x, train_y, test_y


def fit_scaler(instances: pd.DataFrame) -> StandardScaler:
    """Fit the feature scaler on the training instances only (no test rows leak into it)."""
    return StandardScaler().fit(instances)


def fit_classifier(
    scaled_instances: pd.DataFrame,
    labels: pd.DataFrame,
    inverse_regularisation: float,
    max_iter: int,
    random_state: int,
) -> LogisticRegression:
    """Fit a logistic regression; ``inverse_regularisation`` is the ``C`` parameter (smaller = stronger)."""
    classifier = LogisticRegression(
        C=float(inverse_regularisation), max_iter=int(max_iter), random_state=int(random_state)
    )
    return classifier.fit(scaled_instances.to_numpy(), labels[TARGET].to_numpy())


def evaluate(test_predictions: pd.DataFrame, test_labels: pd.DataFrame) -> dict[str, float]:
    """Score the thresholded test predictions; log ``accuracy`` and ``f1`` to MLflow when a run is active.

    Logging only when a run is active keeps a plain ``kedro run`` free of MLflow side effects (no implicit
    ``./mlflow.db``) while a run started by airflow-kedro-mlflow records the metrics promotion compares.
    """
    truth = test_labels[TARGET].to_numpy()
    decided = test_predictions["prediction"].to_numpy()
    metrics = {"accuracy": float(accuracy_score(truth, decided)), "f1": float(f1_score(truth, decided))}
    logger.info("Test metrics: accuracy=%.4f f1=%.4f", metrics["accuracy"], metrics["f1"])

    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics)
    return metrics
