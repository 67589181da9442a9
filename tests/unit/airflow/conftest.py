"""Fixtures of the Airflow-layer unit tests: a private AIRFLOW_HOME and a task instance for dict contexts.

Operators are executed with a plain dict context (``{"ti": ...}``), as Airflow's own provider tests do: the parts
under test are the operator's argument handling and XCom, and the core functions they call run for real. The only
stand-in is :class:`RecordingTaskInstance`, because a real task instance needs a running Airflow API server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest

# Airflow reads AIRFLOW_HOME when it is first imported (it writes logs there): keep it out of the developer's ~/airflow.
if "AIRFLOW_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="akm-airflow-home-")
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
    os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@dataclass
class RecordingTaskInstance:
    """The part of Airflow's task instance the operators use: identity, ``xcom_push`` and ``xcom_pull``."""

    task_id: str
    dag_id: str = "unit_dag"
    run_id: str = "manual__2026-11-23T00:00:00+00:00"
    try_number: int = 1
    map_index: int = -1
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))


def make_context(ti: RecordingTaskInstance) -> dict[str, Any]:
    """A minimal dict context: what the operators read from it."""
    return {"ti": ti, "run_id": ti.run_id, "task_instance": ti}


@pytest.fixture
def mlflow_conn(monkeypatch: pytest.MonkeyPatch, tracking_uri: str) -> str:
    """``mlflow_default`` pointing at the test's sqlite store, given the way deployments give it: an env var."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", f'{{"conn_type": "mlflow", "extra": {{"tracking_uri": "{tracking_uri}"}}}}'
    )
    return tracking_uri
