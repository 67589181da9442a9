"""Helpers of the Airflow-layer unit tests: a task instance for dict contexts.

The throw-away ``AIRFLOW_HOME`` and the ``mlflow_conn`` fixture are in ``tests/conftest.py``, shared by every tier.

Operators are executed with a plain dict context (``{"ti": ...}``), as Airflow's own provider tests do: the parts
under test are the operator's argument handling and XCom, and the core functions they call run for real. The only
stand-in is :class:`RecordingTaskInstance`, because a real task instance needs a running Airflow API server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
