"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

A plain dict literal: Airflow calls this during provider discovery in every process (scheduler, API server, CLI),
so it must import nothing. The ``mlflow`` connection form is declared here (Airflow >= 3.2 ``conn-fields`` /
``ui-field-behaviour``) so the UI shows it without importing the hook.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-kedro-mlflow",
        "name": "Kedro and MLflow",
        "description": (
            "Train Kedro pipelines in Airflow tasks and log or register their inference pipeline as an MLflow model "
            "(``KedroTrainingOperator``, ``KedroModelifyOperator``, ``MlflowPromoteModelOperator``, ``MlflowHook``)."
        ),
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Kedro",
                "external-doc-url": "https://docs.kedro.org/",
                "tags": ["software"],
            },
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "tags": ["software"],
            },
        ],
        "operators": [
            {"integration-name": "Kedro", "python-modules": ["airflow_kedro_mlflow.operators.kedro"]},
            {
                "integration-name": "MLflow",
                "python-modules": ["airflow_kedro_mlflow.operators.mlflow", "airflow_kedro_mlflow.operators.scoring"],
            },
        ],
        "hooks": [
            {"integration-name": "MLflow", "python-modules": ["airflow_kedro_mlflow.hooks.mlflow"]},
        ],
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "airflow_kedro_mlflow.hooks.mlflow.MlflowHook",
                "hook-name": "MLflow",
                "conn-fields": {
                    "tracking_uri": {
                        "label": "Tracking URI",
                        "description": (
                            "Use this URI instead of Schema/Host/Port/Path, for stores that are not HTTP "
                            "servers, e.g. sqlite:////abs/path/mlflow.db or databricks."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "registry_uri": {
                        "label": "Registry URI",
                        "description": "Model registry URI, when it differs from the tracking URI.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ui_url": {
                        "label": "MLflow UI URL",
                        "description": (
                            "Browser-facing MLflow address used by the task's extra links, when workers reach "
                            "the server under another address."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "insecure_tls": {
                        "label": "Skip TLS verification",
                        "description": "Do not verify the server's TLS certificate (self-signed test servers only).",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "timeout": {
                        "label": "HTTP timeout (seconds)",
                        "description": "Timeout of each HTTP request; MLflow's default when empty.",
                        "schema": {"type": ["number", "null"]},
                    },
                    "max_retries": {
                        "label": "HTTP retries",
                        "description": (
                            "Retries of each HTTP request. Keep it small: a task should fail fast and let "
                            "Airflow retry it."
                        ),
                        "schema": {"type": ["integer", "null"], "default": 2},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["extra"],
                    "relabeling": {
                        "schema": "Scheme (http or https)",
                        "login": "Username",
                        "password": "Password or token",
                    },
                    "placeholders": {
                        "schema": "https",
                        "host": "mlflow.internal",
                        "port": "5000",
                        "login": "Basic-auth username; leave empty to send the password as a bearer token",
                        "password": "Basic-auth password, or an access token when Username is empty",
                        "tracking_uri": "sqlite:////opt/mlflow/mlflow.db",
                        "ui_url": "https://mlflow.example.com",
                    },
                },
            }
        ],
        "extra-links": [
            "airflow_kedro_mlflow.links.mlflow.MlflowRunLink",
            "airflow_kedro_mlflow.links.mlflow.MlflowModelVersionLink",
        ],
        # One asset per registered model alias: mlflow-model://<host>:<port>/<name>@<alias> (see the module).
        "asset-uris": [
            {
                "schemes": ["mlflow-model"],
                "handler": "airflow_kedro_mlflow.assets.sanitize_uri",
                "factory": "airflow_kedro_mlflow.assets.create_asset",
            }
        ],
    }
