"""Kedro datasets backed by MLflow: ``MlflowModelDataset`` loads and logs MLflow models from a Kedro catalog."""

from airflow_kedro_mlflow.datasets.mlflow_model_dataset import MlflowModelDataset

__all__ = ["MlflowModelDataset"]
