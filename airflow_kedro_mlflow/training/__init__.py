"""Train a Kedro pipeline in an MLflow run and record what its inference pipeline needs.

- :mod:`.run` — :func:`run_training`, the operator's (and any Python caller's) entry point;
- :mod:`.observer` — the Kedro hooks of one training run (node lines, params, a bounded input sample);
- :mod:`.artifacts` — inference artifacts pinned, uploaded and hashed;
- :mod:`.controls` — Kedro's run controls and runner, checked before any run starts.
"""

from __future__ import annotations

from airflow_kedro_mlflow.training.run import run_training
from airflow_kedro_mlflow.training_result import ARTIFACTS_FOLDER

__all__ = ["ARTIFACTS_FOLDER", "run_training"]
