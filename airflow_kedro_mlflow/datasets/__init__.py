"""Kedro datasets backed by MLflow.

``MlflowModelDataset`` loads and logs MLflow models from a Kedro catalog. The other classes take kedro-mlflow's
catalog syntax, so a kedro-mlflow catalog moves by changing its ``type:`` lines: tracking datasets that log a node's
output into the active MLflow run (``MlflowArtifactDataset``, ``MlflowMetricDataset``, ``MlflowMetricHistoryDataset``,
``MlflowMetricsHistoryDataset``) and kedro-mlflow's model datasets (``MlflowModelTrackingDataset``,
``MlflowModelRegistryDataset``, ``MlflowModelLocalFileSystemDataset``).
"""

from airflow_kedro_mlflow.datasets.kedro_mlflow_model_datasets import (
    MlflowModelLocalFileSystemDataset,
    MlflowModelRegistryDataset,
    MlflowModelTrackingDataset,
)
from airflow_kedro_mlflow.datasets.mlflow_artifact_dataset import MlflowArtifactDataset
from airflow_kedro_mlflow.datasets.mlflow_metric_datasets import (
    MlflowMetricDataset,
    MlflowMetricHistoryDataset,
    MlflowMetricsHistoryDataset,
)
from airflow_kedro_mlflow.datasets.mlflow_model_dataset import MlflowModelDataset

__all__ = [
    "MlflowArtifactDataset",
    "MlflowMetricDataset",
    "MlflowMetricHistoryDataset",
    "MlflowMetricsHistoryDataset",
    "MlflowModelDataset",
    "MlflowModelLocalFileSystemDataset",
    "MlflowModelRegistryDataset",
    "MlflowModelTrackingDataset",
]
