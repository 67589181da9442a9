"""Requirements pinned into a logged model, and the project code shipped with it."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import airflow_kedro_mlflow
from airflow_kedro_mlflow.exceptions import KedroProjectError
from airflow_kedro_mlflow.model import default_pip_requirements, project_code_paths


def test_pins_kedro_kedro_datasets_and_mlflow_as_installed():
    assert default_pip_requirements() == [
        f"kedro=={metadata.version('kedro')}",
        f"kedro-datasets=={metadata.version('kedro-datasets')}",
        f"mlflow=={metadata.version('mlflow')}",
    ]


def test_pins_a_project_installed_from_an_index():
    assert default_pip_requirements("sklearn")[-1] == f"scikit-learn=={metadata.version('scikit-learn')}"


def test_does_not_pin_a_project_installed_from_a_local_path():
    """This package is installed from the checkout (editable, or a locally built wheel): no index has it."""
    assert default_pip_requirements("airflow_kedro_mlflow") == default_pip_requirements()


def test_code_paths_is_the_package_directory():
    assert project_code_paths("airflow_kedro_mlflow") == [str(Path(airflow_kedro_mlflow.__file__).parent)]


def test_code_paths_of_an_unimportable_package_raises():
    with pytest.raises(KedroProjectError, match=re.escape("package 'no_such_kedro_project' cannot be imported")):
        project_code_paths("no_such_kedro_project")
