"""Extra links from a task to the MLflow run and model version it produced.

The operators compute the URLs while they run (from the connection's ``ui_url``, else its HTTP tracking URI) and
push them as XCom under the keys below; a link only reads them back. Airflow calls ``get_link`` in the task process
when the task finishes and stores the result for the UI, so no MLflow call and no connection lookup happens here.
A task whose store has no web UI (e.g. ``sqlite:///…`` without ``ui_url``) pushes no URL and shows no link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key of the MLflow run's URL, pushed by ``KedroTrainingOperator`` and ``KedroModelifyOperator``.
MLFLOW_RUN_URL_KEY = "mlflow_run_url"
#: XCom key of the registered model version's URL, pushed by ``KedroModelifyOperator`` and
#: ``MlflowPromoteModelOperator`` when a version is involved.
MLFLOW_MODEL_VERSION_URL_KEY = "mlflow_model_version_url"


def _xcom_url(ti_key: TaskInstanceKey, key: str) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    url = XCom.get_value(ti_key=ti_key, key=key)
    return url if isinstance(url, str) else ""


class MlflowRunLink(BaseOperatorLink):
    """Link to the MLflow run a task trained in or logged its model to."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the run's URL pushed by the task, or ``""`` (no link) when it pushed none."""
        return _xcom_url(ti_key, MLFLOW_RUN_URL_KEY)


class MlflowModelVersionLink(BaseOperatorLink):
    """Link to the registered model version a task created or promoted."""

    name = "MLflow model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the model version's URL pushed by the task, or ``""`` (no link) when it pushed none."""
        return _xcom_url(ti_key, MLFLOW_MODEL_VERSION_URL_KEY)
