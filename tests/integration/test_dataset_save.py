"""MlflowModelDataset.save in a real Kedro run: the model it logs loads and predicts where the project is not installed.

The example project is copied and given a catalog entry of type ``MlflowModelDataset`` plus a hook (in its
``settings.py``, the way projects add hooks) that saves the run's ``KedroPipelineModel`` into it after the pipeline
ran. ``run_training`` runs it in a process of its own: this copy's settings and pipeline modules must not become the
``kedro_classifier`` that later tests of this session import. A fresh interpreter with a clean ``PYTHONPATH``,
started outside the project, then loads the registered model: it can only predict if the dataset shipped the
project's package with the model (``code_paths``), as modelify does.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

MODEL_NAME = "dataset_model"

CATALOG_ENTRY = f"""

inference_model:
  type: airflow_kedro_mlflow.datasets.MlflowModelDataset
  registered_model_name: {MODEL_NAME}
  alias: candidate
"""

SETTINGS_WITH_SAVING_HOOK = """

from kedro.framework.hooks import hook_impl


class SaveInferenceModel:
    \"\"\"After training, save the inference pipeline with this run's artifacts through the catalog's dataset.\"\"\"

    @hook_impl
    def after_pipeline_run(self, run_params, pipeline, catalog):
        from kedro.framework.project import pipelines

        from airflow_kedro_mlflow.model import KedroPipelineModel

        catalog.save("inference_model", KedroPipelineModel(pipelines["training"], catalog))


HOOKS = (SaveInferenceModel(),)
"""

# Train (the hook saves the model), then write what the project's own inference nodes predict: the reference.
TRAIN = """
import json
import pickle
import sys
from pathlib import Path

import pandas as pd

from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training

project, tracking_uri, reference = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
result = run_training(project, tracking=TrackingConfig(tracking_uri), experiment_name="dataset-save")

from kedro_classifier.pipelines.inference.nodes import predict, scale


def latest(name):
    version_dir = sorted((project / "data" / "06_models" / f"{name}.pkl").iterdir())[-1]
    return pickle.loads((version_dir / f"{name}.pkl").read_bytes())


data = pd.read_csv(project / "data" / "05_model_input" / "instances.csv")
expected = predict(scale(data, latest("scaler")), latest("classifier"), 0.5)
expected.to_json(reference, orient="split", double_precision=15)
print(json.dumps(result.to_xcom()))
"""

# Run in a fresh interpreter: load the registered model and predict on a CSV; print the predictions as JSON.
LOAD_AND_PREDICT = """
import importlib.util
import sys

import mlflow
import pandas as pd

assert importlib.util.find_spec("kedro_classifier") is None, "the project package must not be importable here"
model = mlflow.pyfunc.load_model(sys.argv[1])
print(model.predict(pd.read_csv(sys.argv[2])).to_json(orient="split", double_precision=15))
"""


def _python(script: str, *args: str, cwd: Path, env: dict[str, str]) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


def test_model_saved_by_the_dataset_in_a_kedro_run_predicts_where_the_project_is_not_installed(
    example_project: Path, tmp_path: Path
) -> None:
    catalog = example_project / "conf" / "base" / "catalog.yml"
    catalog.write_text(catalog.read_text() + CATALOG_ENTRY)
    settings = example_project / "src" / "kedro_classifier" / "settings.py"
    settings.write_text(settings.read_text() + SETTINGS_WITH_SAVING_HOOK)
    tracking = TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON", "KEDRO_"))}
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    reference = tmp_path / "reference.json"

    # cwd: MLflow's default ./mlruns artifact root of a sqlite store; PYTHONPATH: this checkout's package
    run_env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    trained = json.loads(
        _python(TRAIN, str(example_project), tracking.tracking_uri, str(reference), cwd=tmp_path, env=run_env)
    )

    client = tracking.client()
    version = client.get_model_version_by_alias(MODEL_NAME, "candidate")
    assert version.run_id == trained["run_id"]  # logged into the training run, which stays FINISHED
    assert client.get_run(trained["run_id"]).info.status == "FINISHED"
    assert version.tags["kedro.pipeline_name"] == "training"  # the run's lineage tags, as modelify tags models
    assert version.tags["kedro.env"] == "local"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    instances = example_project / "data" / "05_model_input" / "instances.csv"
    predicted = _python(LOAD_AND_PREDICT, f"models:/{MODEL_NAME}@candidate", str(instances), cwd=elsewhere,
                        env={**env, "MLFLOW_TRACKING_URI": tracking.tracking_uri})  # fmt: skip

    expected = pd.read_json(reference, orient="split")
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(predicted), orient="split"), expected, check_dtype=False)
    with tracking.activate():
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{version.version}"))
    requirements = (model_dir / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("scikit-learn==") for line in requirements), requirements  # the project's own deps
