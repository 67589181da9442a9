"""A real Airflow 3 deployment for end-to-end tests: api-server, scheduler (LocalExecutor) and dag-processor.

Everything lives in one temp ``AIRFLOW_HOME`` on sqlite, bound to 127.0.0.1 on a free port; each process runs in its
own process group so teardown can stop it and every child it forked (LocalExecutor workers, task supervisors) by
PGID. The production topology (``production_topology.py``) passes another executor and metadata database
(CeleryExecutor, PostgreSQL) and adds its Celery workers with :meth:`AirflowDeployment.start_process`. The client
speaks Airflow's public REST API only, the way a user or the UI does: a JWT from ``/auth/token``, ``/api/v2/...``
for triggers, states, XCom, logs. Facts behind the settings: ``/work/shared/NOTES-real-services.md``
§2 (``--skip-serve-logs`` avoids a log server on 0.0.0.0:8793; parallelism 2 avoids 32 pre-forked workers; the JWT
secret must be >= 64 bytes and shared by all three processes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.servers import free_port, stop_process_group

#: States after which a DAG run or task instance does not change by itself.
RUN_FINISHED = frozenset({"success", "failed"})
TASK_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

_ENV_PREFIXES_NOT_INHERITED = ("AIRFLOW_", "AIRFLOW__", "MLFLOW_", "PYTEST_")
#: Fields of a structured task-log event that repeat on every line (who/where), left out of the plain text.
_LOG_NOISE = frozenset(
    {"timestamp", "event", "level", "logger", "map_index", "try_number", "ti_id", "task_id", "dag_id", "run_id",
     "filename", "lineno", "loc"}
)  # fmt: skip


class AirflowDeploymentError(RuntimeError):
    """The test deployment did not start, or did not reach an expected state in time (message says which)."""


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"<{path} does not exist>"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process and every process left in its group (LocalExecutor workers, task supervisors)."""
    stop_process_group(process)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def stop_groups(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM the groups of all ``processes`` at once (in order), wait up to ``timeout`` in all, SIGKILL the rest.

    One shared wait instead of one per process: each Airflow process takes seconds to shut down cleanly.
    """
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):  # the process, or what it left in its group
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)


@dataclass
class AirflowDeployment:
    """Handle on a running deployment plus a small REST client for it.

    Every wait is bounded: on timeout the error names what was awaited, the last state seen, and the tail of the
    process logs, so a failing CI run says why.
    """

    home: Path
    base_url: str
    username: str
    password: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = field(default=None, repr=False)

    # -- process logs ---------------------------------------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        """Path of the combined stdout/stderr file of process ``name`` (``api-server``, ``scheduler``, ...)."""
        return self.home / "process-logs" / f"{name}.log"

    def diagnostics(self) -> str:
        """Tails of every process log and which processes have exited: appended to timeout errors."""
        parts = []
        for name, proc in self.processes.items():
            status = "running" if proc.poll() is None else f"exited with {proc.returncode}"
            parts.append(f"--- {name} ({status}), last lines of {self.log_path(name)}:\n{_tail(self.log_path(name))}")
        return "\n".join(parts)

    def start_process(
        self, name: str, command: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one more process of the deployment (e.g. a Celery worker) in its own process group.

        Its output goes to :meth:`log_path` ``(name)``, it appears in :meth:`diagnostics`, and the deployment's
        teardown stops it before the scheduler.
        """
        with self.log_path(name).open("wb") as log:
            process = subprocess.Popen(
                command,
                env=dict(self.env if env is None else env),
                cwd=cwd or self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    # -- REST -----------------------------------------------------------------------------------------------------
    def token(self, *, refresh: bool = False) -> str:
        """Return a JWT for the test user from ``POST /auth/token`` (cached)."""
        if self._token is None or refresh:
            response = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=30,
            )
            if response.status_code not in (200, 201):
                raise AirflowDeploymentError(
                    f"POST /auth/token as {self.username!r} returned {response.status_code}: {response.text}"
                )
            self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Call ``/api/v2`` + ``path`` with the bearer token; return the JSON body, or raise naming the call."""
        headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json", **kwargs.pop("headers", {})}
        response = requests.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=60, **kwargs)
        if response.status_code == 401:  # token expired: one fresh try
            headers["Authorization"] = f"Bearer {self.token(refresh=True)}"
            response = requests.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=60, **kwargs)
        if response.status_code not in expect:
            raise AirflowDeploymentError(
                f"{method} /api/v2{path} returned {response.status_code} (expected {expect}): {response.text}"
            )
        return response.json() if response.content else None

    def wait_until_healthy(self, timeout: float = 120.0) -> None:
        """Wait until the API answers and reports metadatabase, scheduler and dag_processor healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._raise_if_a_process_died()
            try:
                response = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
                last = response.json() if response.ok else response.text
            except requests.RequestException as exc:
                last = repr(exc)
            else:
                if response.ok and all(
                    (last.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "dag_processor")
                ):
                    return
            time.sleep(0.5)
        raise AirflowDeploymentError(
            f"Airflow at {self.base_url} not healthy after {timeout:.0f}s; last health: {last}\n{self.diagnostics()}"
        )

    def _raise_if_a_process_died(self) -> None:
        dead = {name: proc.returncode for name, proc in self.processes.items() if proc.poll() is not None}
        if dead:
            raise AirflowDeploymentError(f"Airflow processes exited: {dead}\n{self.diagnostics()}")

    def import_errors(self) -> dict[str, str]:
        """``{file: stack trace}`` of every DAG file the dag-processor failed to import."""
        payload = self.request("GET", "/importErrors")
        return {item["filename"]: item["stack_trace"] for item in payload["import_errors"]}

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120.0) -> None:
        """Wait until every DAG in ``dag_ids`` is parsed; fail at once with the import errors if one has any."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            self._raise_if_a_process_died()
            missing = [d for d in dag_ids if self.request("GET", f"/dags/{d}", expect=(200, 404)).get("dag_id") != d]
            if not missing:
                return
            errors = self.import_errors()
            if errors:
                raise AirflowDeploymentError(f"DAG files failed to import: {json.dumps(errors, indent=1)}")
            time.sleep(1.0)
        raise AirflowDeploymentError(
            f"DAGs {missing} not parsed after {timeout:.0f}s from {self.env['AIRFLOW__CORE__DAGS_FOLDER']}\n"
            f"{self.diagnostics()}"
        )

    def dag_params(self, dag_id: str) -> dict[str, dict[str, Any]]:
        """The DAG's Params as the UI receives them: ``{name: {"value": default, "schema": {...}, ...}}``."""
        return self.request("GET", f"/dags/{dag_id}/details")["params"] or {}

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, body: Mapping[str, Any] | None = None
    ) -> str:
        """Trigger a run through the REST API and return its ``dag_run_id``."""
        payload = dict(body) if body is not None else {"logical_date": None, "conf": dict(conf or {})}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=payload)["dag_run_id"]

    def trigger_as_form(self, dag_id: str, values: Mapping[str, Any]) -> str:
        """Trigger ``dag_id`` with the body the UI's Trigger form POSTs (Airflow 3.3 UI source).

        The form sends every Param (its default unless edited) as ``conf``, ``logical_date`` = the time the modal
        opened in ISO with milliseconds and ``Z``, null data intervals and partition key, and omits empty run id
        and note. Unknown keys in ``values`` are refused here: the form cannot send them.
        """
        params = self.dag_params(dag_id)
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise AirflowDeploymentError(f"{unknown} are not Params of DAG {dag_id!r}; its Params: {sorted(params)}")
        conf = {name: spec.get("value") for name, spec in params.items()} | dict(values)
        opened = dt.datetime.now(dt.timezone.utc)
        body = {
            "conf": conf,
            "data_interval_end": None,
            "data_interval_start": None,
            "logical_date": opened.strftime("%Y-%m-%dT%H:%M:%S.") + f"{opened.microsecond // 1000:03d}Z",
            "partition_key": None,
        }
        return self.trigger(dag_id, body=body)

    def dag_run(self, dag_id: str, dag_run_id: str) -> dict[str, Any]:
        """The DAG run's REST representation (``state``, ``conf``, dates...)."""
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{dag_run_id}")

    def task_instances(self, dag_id: str, dag_run_id: str) -> dict[str, dict[str, Any]]:
        """``{task_id: task instance}`` of one run."""
        payload = self.request("GET", f"/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in payload["task_instances"]}

    def task_instance(self, dag_id: str, dag_run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance (``state``, ``try_number``, ``pid``, ``hostname``...)."""
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}")

    def wait_for_run(self, dag_id: str, dag_run_id: str, timeout: float = 240.0) -> str:
        """Wait until the run is ``success`` or ``failed`` and return that state."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, dag_run_id)["state"]
            if state in RUN_FINISHED:
                return state
            time.sleep(1.0)
        tis = {t: (ti["state"], ti["try_number"]) for t, ti in self.task_instances(dag_id, dag_run_id).items()}
        raise AirflowDeploymentError(
            f"DAG run {dag_id}/{dag_run_id} still {state!r} after {timeout:.0f}s; tasks: {tis}\n{self.diagnostics()}"
        )

    def wait_for_task(
        self,
        dag_id: str,
        dag_run_id: str,
        task_id: str,
        states: set[str] | frozenset[str],
        *,
        try_number: int | None = None,
        timeout: float = 180.0,
        poll: float = 0.5,
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states`` (and at ``try_number`` if given); return it."""
        deadline = time.monotonic() + timeout
        ti: dict[str, Any] = {}
        while time.monotonic() < deadline:
            ti = self.task_instance(dag_id, dag_run_id, task_id)
            if ti["state"] in states and (try_number is None or ti["try_number"] == try_number):
                return ti
            time.sleep(poll)
        raise AirflowDeploymentError(
            f"task {dag_id}/{dag_run_id}/{task_id} not in {sorted(states)} (try {try_number}) after {timeout:.0f}s;"
            f" last seen {ti.get('state')!r} try {ti.get('try_number')}\n{self.diagnostics()}"
        )

    def xcom(
        self, dag_id: str, dag_run_id: str, task_id: str, key: str = "return_value", *, map_index: int = -1
    ) -> Any:
        """The deserialized XCom value a task (map index ``map_index`` of a mapped one) pushed under ``key``."""
        path = f"/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        params = {"deserialize": "true", "stringify": "false", "map_index": str(map_index)}
        return self.request("GET", path, params=params)["value"]

    def task_log(self, dag_id: str, dag_run_id: str, task_id: str, try_number: int) -> str:
        """The task's log for one try as plain text: one line per structured event, with its extra fields."""
        path = f"/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}"
        payload = self.request("GET", path, params={"full_content": "true"})
        lines = []
        for item in payload["content"]:
            if isinstance(item, str):
                lines.append(item)
                continue
            extra = {k: v for k, v in item.items() if k not in _LOG_NOISE}
            errors = extra.pop("error_detail", None) or []
            lines.append(" ".join(str(p) for p in (item.get("level", ""), item.get("event", ""), extra or "") if p))
            # A failed task's exception chain: one "Type: message" line per exception, outermost first.
            lines += [f"    {e.get('exc_type')}: {e.get('exc_value')}" for e in errors if isinstance(e, dict)]
        return "\n".join(lines)

    def clear_task(self, dag_id: str, dag_run_id: str, task_id: str) -> None:
        """Clear one finished task instance so the scheduler runs it again as its next try (what "Clear" does)."""
        body = {"dry_run": False, "dag_run_id": dag_run_id, "task_ids": [task_id], "only_failed": False}
        self.request("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)

    def all_task_logs(self, dag_id: str, dag_run_id: str) -> str:
        """Every try's log of every task of a run, headed by task and try: for assertion messages."""
        chunks = []
        for task_id, ti in sorted(self.task_instances(dag_id, dag_run_id).items()):
            for try_number in range(1, (ti["try_number"] or 0) + 1):
                try:
                    text = self.task_log(dag_id, dag_run_id, task_id, try_number)
                except AirflowDeploymentError as exc:
                    text = str(exc)
                chunks.append(f"===== {task_id} try {try_number} ({ti['state']}) =====\n{text}")
        return "\n".join(chunks)


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_NOT_INHERITED)}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.update({"KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def airflow_env(
    home: Path,
    dags_folder: Path,
    port: int,
    passwords_file: Path,
    extra: Mapping[str, str],
    *,
    executor: str = "LocalExecutor",
    database_uri: str | None = None,
) -> dict[str, str]:
    """Environment shared by ``airflow db migrate`` and the three processes (NOTES-real-services.md §2).

    :param database_uri: SQLAlchemy URI of the metadata database; a sqlite file in ``home`` when None.
    """
    base_url = f"http://127.0.0.1:{port}"
    return _base_env(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_uri or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # 86 chars: no InsecureKeyLengthWarning
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            **extra,
        }
    )


@contextlib.contextmanager
def airflow_deployment(
    home: Path,
    dags_folder: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    dag_ids: list[str] | None = None,
    timeout: float = 180.0,
    executor: str = "LocalExecutor",
    database_uri: str | None = None,
    on_start: Callable[[AirflowDeployment], None] | None = None,
) -> Iterator[AirflowDeployment]:
    """Migrate a fresh metadata DB, start api-server, scheduler and dag-processor, yield a client.

    :param dags_folder: must already hold every DAG file: the dag-processor lists the folder at start only
        (its refresh interval is minutes).
    :param extra_env: added to all three processes, hence to every task (e.g. ``AIRFLOW_CONN_MLFLOW_DEFAULT``).
    :param dag_ids: DAGs to wait for before yielding.
    :param executor: ``[core] executor``; with ``CeleryExecutor`` the caller starts the workers
        (:meth:`AirflowDeployment.start_process`) and gives the broker in ``extra_env``.
    :param database_uri: an empty metadata database to migrate (e.g. PostgreSQL's); a sqlite file in ``home`` when
        None.
    :param on_start: called once the three processes are started, before waiting for them to be healthy: e.g. to
        start Celery workers (:meth:`AirflowDeployment.start_process`), which then boot at the same time.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "process-logs").mkdir(exist_ok=True)
    password = secrets.token_urlsafe(16)
    passwords_file = home / "passwords.json"
    passwords_file.write_text(json.dumps({"admin": password}))
    port = free_port()
    env = airflow_env(
        home, dags_folder, port, passwords_file, extra_env or {}, executor=executor, database_uri=database_uri
    )
    deployment = AirflowDeployment(
        home=home, base_url=f"http://127.0.0.1:{port}", username="admin", password=password, env=env
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    migrate = subprocess.run(
        [airflow, "db", "migrate"], env=env, cwd=home, capture_output=True, text=True, timeout=300, check=False
    )
    if migrate.returncode != 0:
        raise AirflowDeploymentError(f"airflow db migrate failed ({migrate.returncode}):\n{migrate.stderr[-4000:]}")
    commands = {
        "api-server": [airflow, "api-server", "--workers", "1"],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
    }
    try:
        for name, command in commands.items():
            with deployment.log_path(name).open("wb") as log:
                deployment.processes[name] = subprocess.Popen(
                    command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        if on_start is not None:
            on_start(deployment)
        deployment.wait_until_healthy(timeout=timeout)
        if dag_ids:
            deployment.wait_for_dags(dag_ids, timeout=timeout)
        yield deployment
    finally:
        # Processes added by the caller (Celery workers) first, newest first; then the scheduler: it owns the
        # LocalExecutor workers and any task still running.
        core = ("scheduler", "dag-processor", "api-server")
        order = [*reversed([n for n in deployment.processes if n not in core]), *core]
        stop_groups([deployment.processes[name] for name in order if name in deployment.processes])
