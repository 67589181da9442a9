"""Airflow hooks of airflow-kedro-mlflow: ``MlflowHook`` in :mod:`airflow_kedro_mlflow.hooks.mlflow`."""
