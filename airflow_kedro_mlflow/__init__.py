"""Airflow provider that trains Kedro pipelines and registers their inference pipeline as MLflow models."""

__version__ = "0.1.0"
