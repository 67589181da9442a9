"""KubernetesExecution's arguments, a worker without the provider, and the image recipe: what is checked before any
pod is built.

No Kubernetes API is called (nor faked) here, and the provider is not imported: importing it costs about 7 s of CPU
(the ``kubernetes`` and ``kubernetes_asyncio`` clients), more than this tier can spend on one module. The rendered
pod spec, the pod's result and the kill are tested in ``tests/integration/test_kubernetes_execution.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError
from airflow_kedro_mlflow.execution import KubernetesExecution, kubernetes
from airflow_kedro_mlflow.execution.commands import CLI_MODULE
from airflow_kedro_mlflow.execution.versions import SUPPORTED
from airflow_kedro_mlflow.kedro_project import KedroRunSpec
from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.conftest import REPO_ROOT
from tests.unit.airflow.conftest import RecordingTaskInstance

IMAGE = "registry.example.com/kedro-classifier:1.0"
SPEC = KedroRunSpec("/workers/kedro_classifier", "training")


def _execution(**kwargs: Any) -> KubernetesExecution:
    return KubernetesExecution(**{"image": IMAGE, "namespace": "ml", "mlflow_secret": "mlflow-credentials", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": ""}, "needs the project's image"),
        ({"image": None}, "needs the project's image"),
        ({"namespace": 3}, "KubernetesExecution(namespace=...) must be a string"),
        ({"env_vars": {"MLFLOW_TRACKING_PASSWORD": "x"}}, "credentials in plain variables would be in clear"),
        ({"env_vars": {"BAD NAME": "x"}}, "invalid variable names ['BAD NAME']"),
        ({"resources": {"cpu": "1"}}, "must be {'requests': {...}, 'limits': {...}}"),
        ({"pod_kwargs": {"cmds": ["bash"], "image": "x"}}, "sets ['cmds', 'image'], which this mode sets itself"),
        ({"mlflow_secret": None, "mlflow_secret_keys": {"MLFLOW_TRACKING_TOKEN": "token"}}, "pass the secret's name"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_file_builds_the_mode(kwargs, message):
    with pytest.raises(ProjectEnvironmentError, match=re.escape(message)):
        _execution(**kwargs)


def test_a_valid_mode_is_built_without_the_provider(monkeypatch: pytest.MonkeyPatch):
    """A DAG file builds the mode where the DAG processor has no provider; the worker imports it for the pod."""
    monkeypatch.setitem(sys.modules, "airflow.providers.cncf.kubernetes.operators.pod", None)
    execution = _execution(resources={"limits": {"memory": "4Gi"}}, mlflow_secret_keys={"MLFLOW_TRACKING_TOKEN": "t"})
    assert execution.needs_airflow_context


def test_missing_provider_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "airflow.providers.cncf.kubernetes.operators.pod", None)
    kubernetes._provider.cache_clear()
    ti = RecordingTaskInstance(task_id="train")
    try:
        with pytest.raises(ProjectEnvironmentError, match=re.escape("pip install 'airflow-kedro-mlflow[kubernetes]'")):
            _execution().train(SPEC, tracking=TrackingConfig("http://mlflow.internal:5000"), context={"ti": ti})
    finally:
        kubernetes._provider.cache_clear()


# -- the image recipe (no docker here: what can be checked without building it) ---------------------------------------

DOCKERFILE = REPO_ROOT / "dags_examples" / "kedro_classifier" / "Dockerfile"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_image_recipe_copies_files_that_exist_and_its_ignore_file_keeps_them():
    copies = [args.split() for kind, args in _instructions(DOCKERFILE) if kind == "COPY"]
    sources = [source for args in copies for source in args[:-1] if not source.startswith("--")]
    assert sources == [
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "airflow_kedro_mlflow",
        "dags_examples/kedro_classifier",
    ]
    for source in sources:
        assert (REPO_ROOT / source).exists(), source  # the build context is the repository root
    kept = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert kept[1] == "*"
    assert {f"!{source}" for source in sources} <= set(kept)


def test_image_recipe_runs_the_cli_where_the_example_dag_expects_it():
    instructions = dict(_instructions(DOCKERFILE))  # the last of each kind
    default = KubernetesExecution(image=IMAGE)
    assert json.loads(instructions["ENTRYPOINT"]) == [default.python, "-m", CLI_MODULE]
    assert instructions["WORKDIR"] == "/app"
    dag_source = (REPO_ROOT / "dags_examples" / "kubernetes_retraining.py").read_text(encoding="utf-8")
    assert 'project_path="/app"' in dag_source


def test_image_recipe_pins_kedro_and_mlflow_the_core_supports():
    pins = dict(re.findall(r'"(kedro|mlflow)==([0-9.]+)"', DOCKERFILE.read_text(encoding="utf-8")))
    assert set(pins) == {"kedro", "mlflow"}
    for name, version in pins.items():
        low, high = SUPPORTED[name]
        assert low <= tuple(int(part) for part in version.split(".")) < high, (name, version)
