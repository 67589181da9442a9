"""A small scikit-learn training/inference pair, built programmatically, for the model tests.

Training fits a scaler and a logistic regression on sklearn's shipped breast-cancer data; inference scales the
instances, predicts probabilities and applies ``params:threshold``. Node functions live in this module (not in a
test file) so cloudpickle pickles them by reference and every test shares one definition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.pickle import PickleDataset
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from airflow_kedro_mlflow.pipeline import PipelineML, pipeline_ml_factory

THRESHOLD = 0.5


def load_features() -> tuple[pd.DataFrame, pd.Series]:
    features, target = load_breast_cancer(return_X_y=True, as_frame=True)
    return features, target


def fit_scaler(features: pd.DataFrame) -> StandardScaler:
    return StandardScaler().fit(features)


def scale(features: pd.DataFrame, scaler: StandardScaler) -> pd.DataFrame:
    return pd.DataFrame(scaler.transform(features), columns=features.columns, index=features.index)


def scale_array(features: np.ndarray, scaler: StandardScaler) -> np.ndarray:
    return scaler.transform(features)


def fit_classifier(features: pd.DataFrame, target: pd.Series) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(np.asarray(features), target)


def predict_proba(features: pd.DataFrame, classifier: LogisticRegression) -> np.ndarray:
    return classifier.predict_proba(np.asarray(features))[:, 1]


def apply_threshold(proba: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame({"proba": proba, "label": (proba >= threshold).astype("int64")})


def training_pipeline(numpy_input: bool = False) -> Pipeline:
    scale_features = scale_array if numpy_input else scale
    return Pipeline(
        [
            node(fit_scaler, "train_features", "scaler", name="fit_scaler", tags=["training"]),
            node(scale_features, ["train_features", "scaler"], "train_scaled", name="scale_train", tags=["training"]),
            node(fit_classifier, ["train_scaled", "train_target"], "classifier", name="fit_classifier"),
        ]
    )


def inference_pipeline(numpy_input: bool = False) -> Pipeline:
    return Pipeline(
        [
            node(scale_array if numpy_input else scale, ["instances", "scaler"], "instances_scaled", name="scale"),
            node(predict_proba, ["instances_scaled", "classifier"], "proba", name="predict_proba"),
            node(apply_threshold, ["proba", "params:threshold"], "predictions", name="apply_threshold"),
        ]
    )


def classifier_pipeline_ml(numpy_input: bool = False) -> PipelineML:
    return pipeline_ml_factory(training_pipeline(numpy_input), inference_pipeline(numpy_input), input_name="instances")


def classifier_catalog(
    root: Path, threshold: float = THRESHOLD, versioned: bool = True, numpy_input: bool = False
) -> DataCatalog:
    """A catalog whose fitted artifacts are (versioned) pickles under ``root``; training data in memory."""
    features, target = load_features()
    if numpy_input:
        features = features.to_numpy()
    version = Version(None, None) if versioned else None
    return DataCatalog(
        {
            "train_features": MemoryDataset(features),
            "train_target": MemoryDataset(target),
            "scaler": PickleDataset(filepath=str(root / "06_models" / "scaler.pkl"), version=version),
            "classifier": PickleDataset(filepath=str(root / "06_models" / "classifier.pkl"), version=version),
            "params:threshold": MemoryDataset(threshold),
        }
    )


def train(pipeline: Pipeline, catalog: DataCatalog) -> None:
    SequentialRunner().run(pipeline, catalog)


def sample_instances(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` instances drawn from the dataset with a little noise, so big batches are not copies."""
    features, _ = load_features()
    rng = np.random.default_rng(seed)
    picked = features.iloc[rng.integers(0, len(features), size=rows)].reset_index(drop=True)
    return picked * rng.normal(1.0, 0.01, size=picked.shape)


def run_inference(inference: Pipeline, catalog: DataCatalog, instances, **params: float):
    """What Kedro's SequentialRunner gives for ``inference`` on ``instances`` with this catalog's artifacts."""
    run_catalog = DataCatalog(
        {
            "scaler": MemoryDataset(catalog.load("scaler")),
            "classifier": MemoryDataset(catalog.load("classifier")),
            "params:threshold": MemoryDataset(params.get("threshold", catalog.load("params:threshold"))),
            "instances": MemoryDataset(instances),
        }
    )
    SequentialRunner().run(inference, run_catalog)
    return run_catalog.load("predictions")
