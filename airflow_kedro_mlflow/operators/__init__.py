"""Airflow operators of airflow-kedro-mlflow.

:mod:`~airflow_kedro_mlflow.operators.kedro` trains and modelifies Kedro pipelines;
:mod:`~airflow_kedro_mlflow.operators.mlflow` promotes registered model versions.
"""
