"""Extra links from Airflow tasks to the MLflow UI: :mod:`airflow_kedro_mlflow.links.mlflow`."""
