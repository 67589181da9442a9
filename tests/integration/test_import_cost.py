"""The Airflow layer and the example DAG files import neither kedro nor mlflow (checked in a fresh interpreter).

The DAG processor re-parses DAG files every few seconds: importing kedro (which also reconfigures logging) or mlflow
there would cost seconds per parse. The operators import them inside ``execute`` only. ruff's TID253 catches a
module-level import in our files; this catches one that sneaks in through anything they import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A fresh interpreter importing Airflow costs seconds: integration tier.
pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO_ROOT / "dags_examples").glob("*.py"))
AIRFLOW_LAYER = [
    "airflow_kedro_mlflow.get_provider_info",
    "airflow_kedro_mlflow.hooks.mlflow",
    "airflow_kedro_mlflow.links.mlflow",
    "airflow_kedro_mlflow.operators.kedro",
    "airflow_kedro_mlflow.operators.mlflow",
    "airflow_kedro_mlflow.operators.scoring",
    "airflow_kedro_mlflow.assets",
    "airflow_kedro_mlflow.openlineage",
]
HEAVY = ["kedro", "kedro_datasets", "mlflow", "sklearn", "pandas"]

# Imports each target in turn and reports which heavy top-level packages were loaded once it was imported.
PROBE = """
import importlib, importlib.util, json, sys
heavy, report = set(json.loads(sys.argv[1])), {}
for target in sys.argv[2:]:
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location("dag_" + str(len(report)), target)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    else:
        importlib.import_module(target)
    report[target] = sorted({name.split(".")[0] for name in sys.modules} & heavy)
print(json.dumps(report))
"""


def test_airflow_layer_and_dag_files_import_neither_kedro_nor_mlflow(tmp_path):
    assert {path.name for path in DAG_FILES} >= {"kedro_classifier_retraining.py", "kedro_classifier_on_demand.py"}
    targets = AIRFLOW_LAYER + [str(path) for path in DAG_FILES]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The champion-scoring DAG names its asset's registry from the connection when it is parsed (no MLflow call).
        "AIRFLOW_CONN_MLFLOW_DEFAULT": "mlflow://mlflow.internal:5000",
    }
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), *targets],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {target: [] for target in targets}
