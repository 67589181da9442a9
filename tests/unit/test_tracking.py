"""TrackingConfig: URIs without credentials, activate() sets and restores everything, credentials stay in memory."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import MlflowConnectionError, MlflowServerUnavailableError
from airflow_kedro_mlflow.tracking import TrackingConfig, strip_userinfo
from airflow_kedro_mlflow.tracking.auth import authorization_for
from tests.servers import RecordingMlflowServer, free_port

SECRET = "s3cret-Pa55word"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://admin:pw@mlflow.internal:5000/prefix", "http://mlflow.internal:5000/prefix"),
        ("https://token@mlflow.internal", "https://mlflow.internal"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("databricks", "databricks"),
    ],
)
def test_strip_userinfo(uri: str, expected: str) -> None:
    assert strip_userinfo(uri) == expected


def test_credentials_in_the_uri_move_out_of_it() -> None:
    config = TrackingConfig(f"http://admin:{SECRET}@mlflow.internal:5000")

    assert config.tracking_uri == "http://mlflow.internal:5000"
    assert config.public_uri == "http://mlflow.internal:5000"
    assert (config.username, config.password) == ("admin", SECRET)
    assert SECRET not in repr(config)


def test_explicit_credentials_win_over_userinfo_and_the_uri_is_still_cleaned() -> None:
    config = TrackingConfig("http://other:pw@mlflow.internal:5000", username="admin", password=SECRET)

    assert config.tracking_uri == "http://mlflow.internal:5000"
    assert (config.username, config.password) == ("admin", SECRET)


def test_empty_tracking_uri_is_refused() -> None:
    with pytest.raises(MlflowConnectionError, match="MLFLOW_TRACKING_URI"):
        TrackingConfig("  ")


def test_negative_retries_are_refused() -> None:
    with pytest.raises(MlflowConnectionError, match="max_retries"):
        TrackingConfig("http://127.0.0.1:5000", max_retries=-1)


def test_from_env_without_tracking_uri_refuses_the_implicit_local_store() -> None:
    with pytest.raises(MlflowConnectionError, match=re.escape("MLFLOW_TRACKING_URI is not set")):
        TrackingConfig.from_env({})


def test_from_env_reads_mlflow_variables() -> None:
    config = TrackingConfig.from_env(
        {
            "MLFLOW_TRACKING_URI": "https://mlflow.internal",
            "MLFLOW_REGISTRY_URI": "https://registry.internal",
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": SECRET,
            "MLFLOW_TRACKING_INSECURE_TLS": "true",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "7.5",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )

    assert config == TrackingConfig(
        "https://mlflow.internal",
        registry_uri="https://registry.internal",
        username="admin",
        password=SECRET,
        insecure_tls=True,
        timeout=7.5,
        max_retries=0,
    )


def test_from_env_takes_a_token_when_there_is_no_user() -> None:
    config = TrackingConfig.from_env({"MLFLOW_TRACKING_URI": "https://mlflow.internal", "MLFLOW_TRACKING_TOKEN": "tok"})

    assert (config.username, config.password) == (None, "tok")


def test_from_env_names_a_bad_number() -> None:
    with pytest.raises(MlflowConnectionError, match="MLFLOW_HTTP_REQUEST_MAX_RETRIES='many'"):
        TrackingConfig.from_env({"MLFLOW_TRACKING_URI": "http://x", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "many"})


def test_activate_sets_uris_and_restores_an_unset_state(tmp_path: Path, tracking_uri: str) -> None:
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    config = TrackingConfig(tracking_uri, registry_uri=registry, timeout=0.5, max_retries=1, insecure_tls=True)

    with config.activate():
        assert mlflow.get_tracking_uri() == tracking_uri
        assert mlflow.get_registry_uri() == registry
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"  # MLflow parses an int: rounded up, never 0
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
        assert os.environ["MLFLOW_TRACKING_INSECURE_TLS"] == "true"

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                 "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_TRACKING_INSECURE_TLS"):  # fmt: skip
        assert name not in os.environ
    from mlflow.tracking._tracking_service import utils as tracking_utils

    assert tracking_utils._tracking_uri is None


def test_activate_restores_previous_settings_even_on_error(
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = f"sqlite:///{tmp_path / 'outer.db'}"
    mlflow.set_tracking_uri(outer)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "their-password")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")

    with pytest.raises(RuntimeError, match="boom"), TrackingConfig(tracking_uri, max_retries=0).activate():
        assert mlflow.get_tracking_uri() == tracking_uri
        # credentials from the environment would override ours: they are out of the way while active
        assert "MLFLOW_TRACKING_USERNAME" not in os.environ
        assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
        raise RuntimeError("boom")

    assert mlflow.get_tracking_uri() == outer
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "someone"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "their-password"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"


def test_an_experiment_chosen_inside_activate_does_not_leak_out(
    tmp_path: Path, tracking_uri: str, new_mlflow_store
) -> None:
    with TrackingConfig(tracking_uri).activate():
        mlflow.set_experiment("inside")
        assert "MLFLOW_EXPERIMENT_ID" in os.environ

    assert "MLFLOW_EXPERIMENT_ID" not in os.environ
    other = TrackingConfig(new_mlflow_store(tmp_path, "other.db"))
    with other.activate():
        client = other.client()
        client.create_experiment("padding")  # so "elsewhere" gets another id than "inside" had
        run_id = client.create_run(client.create_experiment("elsewhere")).info.run_id
        # a stale active experiment from the first store would make MLflow refuse to resume this run
        with mlflow.start_run(run_id=run_id) as run:
            assert run.info.run_id == run_id


@pytest.fixture
def recording_servers() -> Iterator[tuple[RecordingMlflowServer, RecordingMlflowServer]]:
    ours, other = RecordingMlflowServer(), RecordingMlflowServer()
    yield ours, other
    ours.close()
    other.close()


def test_credentials_reach_only_their_own_server(recording_servers) -> None:
    ours, other = recording_servers
    config = TrackingConfig(ours.uri, username="admin", password=SECRET, max_retries=0)
    expected = "Basic " + base64.standard_b64encode(f"admin:{SECRET}".encode()).decode()

    with config.activate():
        config.client().search_experiments()  # our server, through MLflow's own client
        MlflowClient(tracking_uri=other.uri).search_experiments()  # e.g. a Kedro node talking to another server
        # same host, another port: another origin
        assert authorization_for(other.uri + "/api/2.0/mlflow/experiments/search") is None
    MlflowClient(tracking_uri=ours.uri).search_experiments()  # after the block: nothing is sent any more

    assert ours.authorizations == [expected, None]
    assert other.authorizations == [None]


def test_token_is_sent_as_bearer_and_nested_activations_stack(recording_servers) -> None:
    ours, other = recording_servers
    outer = TrackingConfig(ours.uri, password="tok-1", max_retries=0)
    inner = TrackingConfig(other.uri, username="u", password="p", max_retries=0)

    with outer.activate():
        with inner.activate():
            MlflowClient(tracking_uri=ours.uri).search_experiments()
            MlflowClient(tracking_uri=other.uri).search_experiments()
            assert mlflow.get_tracking_uri() == inner.tracking_uri
        MlflowClient(tracking_uri=other.uri).search_experiments()
        assert mlflow.get_tracking_uri() == ours.uri

    assert ours.authorizations == ["Bearer tok-1"]
    assert other.authorizations == ["Basic " + base64.standard_b64encode(b"u:p").decode(), None]


def test_credentials_never_reach_the_environment_of_child_processes(tracking_uri: str) -> None:
    config = TrackingConfig(tracking_uri, username="admin", password=SECRET)

    with config.activate():
        assert all(SECRET not in value for value in os.environ.values())
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(repr(dict(os.environ)))"],
            capture_output=True,
            text=True,
            check=True,
        )
    assert SECRET not in child.stdout


def test_unreachable_server_raises_naming_the_uri_without_credentials() -> None:
    port = free_port()  # nothing listens there
    config = TrackingConfig(f"http://admin:{SECRET}@127.0.0.1:{port}", max_retries=0, timeout=5)

    with config.activate(), pytest.raises(MlflowServerUnavailableError) as info:
        config.check_connection()

    message = str(info.value)
    assert f"Cannot reach the MLflow tracking server at http://127.0.0.1:{port}" in message
    assert SECRET not in message


@pytest.mark.parametrize("status", [400, 404, 405])
def test_a_server_that_answers_but_refuses_is_not_called_unreachable(status: int) -> None:
    """A 4xx means the server was reached and refused the request (e.g. a URI with a path that is not MLflow's):
    saying "cannot reach ... retry once it is back" sent users after a network problem they did not have."""
    server = RecordingMlflowServer(status=status)
    try:
        config = TrackingConfig(f"{server.uri}/not-mlflow", max_retries=0, timeout=5)
        with config.activate(), pytest.raises(MlflowConnectionError) as info:
            config.check_connection()
    finally:
        server.close()

    message = str(info.value)
    assert f"MLflow tracking server {server.uri}/not-mlflow answered HTTP {status}" in message
    assert "Cannot reach" not in message
    assert "points at an MLflow tracking server" in message


def test_check_connection_passes_on_a_reachable_store(tracking_uri: str) -> None:
    config = TrackingConfig(tracking_uri)

    with config.activate():
        config.check_connection()


def test_client_works_outside_activate_for_a_store_without_credentials(tracking_uri: str) -> None:
    client = TrackingConfig(tracking_uri).client()

    experiment_id = client.create_experiment("bound")

    assert client.tracking_uri == tracking_uri
    assert TrackingConfig(tracking_uri).client().get_experiment(experiment_id).name == "bound"


def test_urls_use_the_ui_url_when_given() -> None:
    config = TrackingConfig("http://mlflow:5000", ui_url="https://mlflow.example.com/")

    assert config.run_url("3", "abc") == "https://mlflow.example.com/#/experiments/3/runs/abc"
    assert config.model_version_url("my model", 4) == "https://mlflow.example.com/#/models/my%20model/versions/4"


def test_urls_fall_back_to_an_http_tracking_uri_without_credentials() -> None:
    config = TrackingConfig(f"http://admin:{SECRET}@mlflow:5000")

    assert config.run_url("3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"


def test_no_url_for_a_store_without_a_browser_address(tracking_uri: str) -> None:
    config = TrackingConfig(tracking_uri)

    assert config.run_url("1", "abc") is None
    assert config.model_version_url("m", 1) is None


def test_get_or_create_experiment_creates_once_and_refuses_a_deleted_one(tmp_path, new_mlflow_store) -> None:
    from mlflow.tracking import MlflowClient

    from airflow_kedro_mlflow.exceptions import MlflowConnectionError
    from airflow_kedro_mlflow.tracking import get_or_create_experiment

    client = MlflowClient(new_mlflow_store(tmp_path))
    created = get_or_create_experiment(client, "kedro_classifier")
    assert get_or_create_experiment(client, "kedro_classifier") == created
    client.delete_experiment(created)
    with pytest.raises(MlflowConnectionError, match=r"experiment 'kedro_classifier' is deleted\. Restore it"):
        get_or_create_experiment(client, "kedro_classifier")


def test_flatten_params_names_nested_keys_with_dots_and_cuts_long_values() -> None:
    from airflow_kedro_mlflow.tracking import flatten_params

    flat = flatten_params({"model": {"C": 0.5, "solver": "lbfgs"}, "threshold": 0.4, "blob": "x" * 7000, "empty": {}})
    assert flat["model.C"] == "0.5" and flat["model.solver"] == "lbfgs" and flat["threshold"] == "0.4"
    assert len(flat["blob"]) == 6000 and flat["blob"].endswith("...")
    assert flat["empty"] == "{}"
