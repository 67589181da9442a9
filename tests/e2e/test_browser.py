"""The Airflow UI in a real browser: log in, fill the on-demand DAG's Trigger form, follow the MLflow extra link.

Debian's chromium (installed by the test setup when missing) driven by the pip-pinned Playwright through
``executable_path``: Playwright's own browser download is never used. Selectors are roles, names and the form's
``element_<param>`` inputs (NOTES-real-services.md §4): Chakra's generated ids change between renders.

The screenshot of the filled Trigger form is written to ``$E2E_SCREENSHOT_DIR`` (``docs/_static`` when refreshing
the docs' picture) or else to the test's tmp dir.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.installers import CHROMIUM_ARGS, ensure_chromium
from tests.e2e.scenarios import ON_DEMAND_DAG, assert_run_succeeded
from tests.servers import MLFLOW_ADMIN_USER, MlflowServer

pytestmark = pytest.mark.browser

MODEL_NAME = "e2e_browser"
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium under Playwright."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), headless=True, args=list(CHROMIUM_ARGS))
        yield launched
        launched.close()


def _find_run(airflow: AirflowDeployment, registered_model_name: str, timeout: float = 60.0) -> str:
    """The dag_run_id of the on-demand run whose conf names ``registered_model_name`` (the one the form created)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.request("GET", f"/dags/{ON_DEMAND_DAG}/dagRuns", params={"limit": 100})["dag_runs"]
        for run in runs:
            if (run.get("conf") or {}).get("registered_model_name") == registered_model_name:
                return run["dag_run_id"]
        time.sleep(0.5)
    raise AssertionError(f"no {ON_DEMAND_DAG} run with registered_model_name={registered_model_name!r} appeared")


def test_trigger_form_run_and_mlflow_model_version_link(
    browser: Any, airflow: AirflowDeployment, mlflow_auth_server: MlflowServer, mlflow_admin: Any, tmp_path: Path
) -> None:
    screenshots = Path(os.environ.get("E2E_SCREENSHOT_DIR") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)
    # Credentials for the MLflow origin only, as a user who logged in to MLflow would have them.
    context = browser.new_context(
        viewport={"width": 1280, "height": 1500},  # tall enough for the whole Trigger form
        http_credentials={
            "username": MLFLOW_ADMIN_USER,
            "password": mlflow_auth_server.admin_password,
            "origin": mlflow_auth_server.uri,
        },
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{airflow.base_url}/dags/{ON_DEMAND_DAG}")
        page.locator("input[name=username]").fill(airflow.username)
        page.locator("input[name=password]").fill(airflow.password)
        page.locator("button[type=submit]").click()
        page.wait_for_url(f"**/dags/{ON_DEMAND_DAG}**")

        page.get_by_role("button", name="Trigger Dag").click()
        dialog = page.get_by_role("dialog")
        dialog.locator("input[name=element_registered_model_name]").fill(MODEL_NAME)
        dialog.locator("input[name=element_C]").fill("0.7")
        dialog.locator("input[name=element_threshold]").fill("0.6")
        dialog.screenshot(path=str(screenshots / "trigger_form.png"))
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        page.get_by_text("successfully triggered").first.wait_for()

        dag_run_id = _find_run(airflow, MODEL_NAME)
        assert_run_succeeded(airflow, ON_DEMAND_DAG, dag_run_id)
        conf = airflow.dag_run(ON_DEMAND_DAG, dag_run_id)["conf"]
        assert (conf["C"], conf["threshold"]) == (0.7, 0.6)  # the form sent numbers for the typed Params

        # The task instance's Details tab lists its extra links.
        page.goto(f"{airflow.base_url}/dags/{ON_DEMAND_DAG}/runs/{dag_run_id}/tasks/modelify/details")
        with context.expect_page() as opened:
            page.get_by_role("link", name="MLflow model version").click()
        mlflow_page = opened.value
        mlflow_page.wait_for_load_state()
        assert mlflow_page.url.startswith(f"{mlflow_auth_server.uri}/"), mlflow_page.url
        assert f"/models/{MODEL_NAME}/versions/1" in mlflow_page.url, mlflow_page.url
        mlflow_page.get_by_text(MODEL_NAME).first.wait_for()  # rendered from the MLflow server's API
        mlflow_page.screenshot(path=str(tmp_path / "mlflow_model_version.png"))
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        context.close()
    assert mlflow_admin.get_model_version_by_alias(MODEL_NAME, "challenger").version == "1"
