"""Batch scoring: a table scored with a registered MLflow model, no Airflow needed.

:func:`score_batch` is the one entry point (``MlflowBatchPredictOperator`` and ``airflow-kedro-mlflow score`` call
it): :mod:`.model_uri` resolves the model URI once, :mod:`.sources` reads the input in chunks (a path with a format,
or a Kedro catalog dataset), :mod:`.pandas_engine` / :mod:`.spark_engine` score, and :mod:`.output` writes the result
atomically, once per task, with what produced it recorded next to it.
"""

from __future__ import annotations

from airflow_kedro_mlflow.scoring.api import DEFAULT_CHUNK_SIZE, ENGINES, score_batch
from airflow_kedro_mlflow.scoring.model_uri import ResolvedModel, pin_to_event, resolve_model_uri
from airflow_kedro_mlflow.scoring.output import PARQUET_METADATA_KEY, read_record, sidecar_path
from airflow_kedro_mlflow.scoring.result import ScoringResult
from airflow_kedro_mlflow.scoring.sources import FORMATS, DatasetLocation, PathLocation

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ENGINES",
    "FORMATS",
    "PARQUET_METADATA_KEY",
    "DatasetLocation",
    "PathLocation",
    "ResolvedModel",
    "ScoringResult",
    "pin_to_event",
    "read_record",
    "resolve_model_uri",
    "score_batch",
    "sidecar_path",
]
