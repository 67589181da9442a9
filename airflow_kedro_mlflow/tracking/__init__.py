"""MLflow only, no Kedro: where the server is and how to reach it (:mod:`.config`, :mod:`.auth`), runs and
experiments (:mod:`.runs`), the registry (:mod:`.registry`), tags (:mod:`.tags`) and params (:mod:`.params`).

The names below are the package's public tracking API, importable from here as before it became a package.
"""

from __future__ import annotations

from airflow_kedro_mlflow.tracking.config import (
    DEFAULT_MAX_RETRIES,
    TrackingConfig,
    same_tracking_uri,
    strip_userinfo,
)
from airflow_kedro_mlflow.tracking.params import flatten_params
from airflow_kedro_mlflow.tracking.runs import get_or_create_experiment
from airflow_kedro_mlflow.tracking.tags import RETRY_IDENTITY_TAGS

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "RETRY_IDENTITY_TAGS",
    "TrackingConfig",
    "flatten_params",
    "get_or_create_experiment",
    "same_tracking_uri",
    "strip_userinfo",
]
