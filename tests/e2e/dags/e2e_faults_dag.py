"""Test DAG of the e2e fault scenarios: the example project, the real operators, and two controllable pauses.

Same tasks as the example ``kedro_classifier_on_demand`` DAG (train -> modelify), plus what a fault test needs to act
at a known moment rather than racing the scheduler:

- ``pause_training``: train with ``e2e_pausing_runner.PauseOnFirstTryRunner`` (copied into the project package),
  whose first try stops after saving the ``scaler`` and waits to be killed; ``retries=1`` gives the retry that must
  start clean.
- ``hold_modelify``: a sensor between train and modelify waits for ``<E2E_SIGNAL_DIR>/<run>.release``, so a test can
  stop the MLflow server after training and before modelify; ``retries=0`` on modelify, the test clears it
  (Airflow's "Clear" = the next try) once the server is back.

Copied next to the example DAGs and project into the e2e deployment's DAG folder by ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, Param
from e2e_signals import signal_file

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator

PROJECT_PATH = str(Path(__file__).resolve().parent / "kedro_classifier")
PAUSING_RUNNER = "kedro_classifier.e2e_pausing_runner.PauseOnFirstTryRunner"


def _modelify_released(params: dict[str, Any], run_id: str, **_: Any) -> bool:
    return not params["hold_modelify"] or signal_file(run_id, "release").exists()


with DAG(
    dag_id="e2e_faults",
    schedule=None,
    render_template_as_native_obj=True,
    params={
        "registered_model_name": Param("e2e_faults", type="string"),
        "kedro_env": Param("no_shared_disk", type="string"),
        "C": Param(1.0, type="number", exclusiveMinimum=0),
        "pause_training": Param(False, type="boolean"),
        "hold_modelify": Param(False, type="boolean"),
    },
    tags=["e2e"],
):
    train = KedroTrainingOperator(
        task_id="train",
        project_path=PROJECT_PATH,
        env="{{ params.kedro_env }}",
        experiment_name="e2e_faults",
        runtime_params={"C": "{{ params.C }}"},
        runner="{{ '" + PAUSING_RUNNER + "' if params.pause_training else 'SequentialRunner' }}",
        retries=1,
        retry_delay=dt.timedelta(seconds=1),
    )
    hold = PythonSensor(
        task_id="hold_modelify",
        python_callable=_modelify_released,
        poke_interval=1,
        timeout=600,
        mode="poke",
    )
    modelify = KedroModelifyOperator(
        task_id="modelify",
        training_task_id="train",
        registered_model_name="{{ params.registered_model_name }}",
        aliases=["challenger"],
        retries=0,
    )
    train >> hold >> modelify
