"""The production topology of the e2e tier: PostgreSQL, Redis, an MLflow server on PostgreSQL, two Celery workers.

What production runs, on one machine, every server on 127.0.0.1 and a free port, each stopped by the test:

- **PostgreSQL** (Debian's, started as the ``postgres`` system user: it refuses root) holds two databases: Airflow's
  metadata (``airflow``, also the Celery result backend) and MLflow's backend store (``mlflow``).
- **Redis** is the Celery broker.
- **MLflow** serves the tracking store from PostgreSQL and proxies the artifact store (``--serve-artifacts``): the
  only way an artifact gets from one worker to another.
- **Two Celery workers**, each a "machine" of its own: its own ``AIRFLOW_HOME`` (task logs), its own copy of the DAGs
  and of the Kedro project, its own cache of project virtualenvs (``XDG_CACHE_HOME``). They share no disk with each
  other or with the scheduler's DAG folder. uv's *package download* cache is the one exception (``UV_CACHE_DIR``):
  a read-through cache of the package index, as a CI runner or a worker image keeps it; nothing the tasks produce
  goes there. The e2e signal directory is test plumbing (the test tells a task to pause), not a data path.
- The project's virtualenv (``VirtualenvExecution(requirements=...)``) is provisioned into each worker's cache while
  the servers start, as a worker image would ship it (:func:`provisioning_project_venv`): built once with the
  package's own ``ensure_venv``, copied to the other worker. The tasks find it by its cache key.

Queues pin tasks to workers: worker ``a`` serves ``worker_a`` and ``training``, worker ``b`` serves ``worker_b`` and
``training`` (the same names as ``dags/e2e_topology_dag.py``). A task on ``worker_b`` can only run on worker ``b``;
one on ``training`` runs on whichever worker is alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.e2e.airflow_deployment import RUN_FINISHED, AirflowDeployment, airflow_deployment
from tests.e2e.installers import ensure_postgresql, ensure_redis
from tests.servers import free_port, stop_process_group, wait_for_http

E2E_DIR = Path(__file__).resolve().parent
PROJECT_NAME = "kedro_classifier"
#: Celery queues (``dags/e2e_topology_dag.py`` uses the same names): one per worker, and one both serve.
QUEUE_A, QUEUE_B, QUEUE_ANY = "worker_a", "worker_b", "training"
WORKER_QUEUES = {"a": (QUEUE_A, QUEUE_ANY), "b": (QUEUE_B, QUEUE_ANY)}
#: The project's own environment: another scikit-learn than the Airflow environment's (1.9.x); the same one
#: tests/integration/test_virtualenv_mode.py builds, so uv's package cache already holds its wheels.
PROJECT_SKLEARN = "1.7.2"
PROJECT_REQUIREMENTS = (
    f"scikit-learn=={PROJECT_SKLEARN}\n"
    "pandas>=2\n"
    "kedro-datasets[pandas-csvdataset,pickle-pickledataset,json-jsondataset]>=9\n"
)


class TopologyError(RuntimeError):
    """A server of the topology did not start or stop (message says which, with its log)."""


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else f"<no {path}>"


# -- PostgreSQL ---------------------------------------------------------------------------------------------------
@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1, run as the ``postgres`` system user, trust auth on loopback."""

    root: Path
    bin_dir: Path
    port: int

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def uri(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URI of ``database`` as user ``postgres`` (no password: trust on 127.0.0.1)."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *command: str, timeout: float = 120) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise TopologyError(
                f"`{' '.join(command[:2])} ...` as postgres exited {done.returncode}:\n{done.stderr[-2000:]}\n"
                f"{_tail(self.log_path)}"
            )

    def start(self) -> PostgresServer:
        """``initdb`` (no fsync: a test cluster) and ``pg_ctl start``, waiting until it accepts connections."""
        data = self.root / "data"
        self._as_postgres(str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port} -c fsync=off -c synchronous_commit=off"
        options += " -c full_page_writes=off -c max_connections=200"
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.log_path),
                          "-w", "-t", "60", "start")  # fmt: skip
        return self

    def create_database(self, name: str) -> None:
        self._as_postgres(str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"')  # fmt: skip

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; SIGKILL the postmaster if that fails (its pid is in ``postmaster.pid``)."""
        data = self.root / "data"
        pid_file = data / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
        except (TopologyError, subprocess.TimeoutExpired):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)


@contextlib.contextmanager
def postgres_server(databases: tuple[str, ...]) -> Iterator[PostgresServer]:
    """Start PostgreSQL with ``databases`` created; stop it and delete its files afterwards.

    Its directory is a fresh one under the system temp dir, owned by ``postgres``: pytest's temp dirs are private
    to root, and the server cannot run as root.
    """
    bin_dir = ensure_postgresql()
    root = Path(tempfile.mkdtemp(prefix="akm-e2e-postgres-"))
    shutil.chown(root, user="postgres", group="postgres")
    server = PostgresServer(root=root, bin_dir=bin_dir, port=free_port())
    try:
        server.start()
        for name in databases:
            server.create_database(name)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- Redis --------------------------------------------------------------------------------------------------------
def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(root: Path, timeout: float = 30) -> Iterator[str]:
    """Run ``redis-server`` on 127.0.0.1 (no persistence) and yield its ``redis://`` URL; stop it by its PGID."""
    executable = ensure_redis()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [executable, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(root)],
            cwd=root, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not _redis_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise TopologyError(f"redis-server on 127.0.0.1:{port} did not answer PING:\n{_tail(log)}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process_group(process)


# -- MLflow on PostgreSQL -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MlflowOnPostgres:
    """A started ``mlflow server`` whose backend store is PostgreSQL and whose artifacts it proxies."""

    uri: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def airflow_conn_uri(self) -> str:
        return "mlflow://" + self.uri.removeprefix("http://")

    def wait_ready(self, timeout: float = 180) -> None:
        """Wait for ``/health``: the server creates its tables in PostgreSQL first (tens of seconds on 2 cores)."""
        wait_for_http(f"{self.uri}/health", timeout, self.process, self.log_path)


@contextlib.contextmanager
def mlflow_on_postgres(root: Path, backend_store_uri: str) -> Iterator[MlflowOnPostgres]:
    """Start ``mlflow server --backend-store-uri postgresql://... --serve-artifacts`` on 127.0.0.1 (one worker, no
    job runner) and yield at once: the caller starts other things meanwhile, then calls ``wait_ready``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "mlflow-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "1"})
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", backend_store_uri,
               "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield MlflowOnPostgres(uri=f"http://127.0.0.1:{port}", log_path=log, process=process)
    finally:
        stop_process_group(process)


# -- DAG folders and Celery workers -------------------------------------------------------------------------------
def build_topology_dags_folder(target: Path) -> Path:
    """One machine's DAG folder: the topology test DAG, and a copy of the example Kedro project with its
    ``requirements.txt``, the e2e Kedro env ``no_shared_disk`` and the pausing runner (plus ``e2e_signals``, which
    the runner imports, in ``src/``: the project's environment has no DAG folder on its path)."""
    project = target / PROJECT_NAME
    shutil.copytree(
        REPO_ROOT / "dags_examples" / PROJECT_NAME,
        project,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc", ".ipynb_checkpoints"),
    )
    for produced in (project / "data").glob("0*/*"):  # outputs a developer's local `kedro run` left behind
        if produced.name != ".gitkeep":
            shutil.rmtree(produced) if produced.is_dir() else produced.unlink()
    shutil.copytree(E2E_DIR / "kedro_conf", project / "conf", dirs_exist_ok=True)
    (project / "requirements.txt").write_text(PROJECT_REQUIREMENTS)
    shutil.copy2(E2E_DIR / "dags" / "e2e_pausing_runner.py", project / "src" / PROJECT_NAME)
    shutil.copy2(E2E_DIR / "dags" / "e2e_signals.py", project / "src")
    shutil.copy2(E2E_DIR / "dags" / "e2e_topology_dag.py", target)
    (target / ".airflowignore").write_text(f"{PROJECT_NAME}/\n")  # no DAG in the project: the processor skips it
    return target


#: Builds a project virtualenv with the worker's own code (``ensure_venv``), in a process of the Airflow environment
#: started outside the checkout, so the cache key is the one a worker computes.
_PROVISION = """
import sys
from pathlib import Path
from airflow_kedro_mlflow.execution.venv import ensure_venv
print(ensure_venv(Path(sys.argv[1]), cache_root=Path(sys.argv[2])))
"""


def project_venv_cache(worker_root: Path) -> Path:
    """``VirtualenvExecution``'s default cache on a worker whose ``XDG_CACHE_HOME`` is ``<worker_root>/cache``."""
    return worker_root / "cache" / "airflow-kedro-mlflow"


@contextlib.contextmanager
def provisioning_project_venv(root: Path, worker_roots: list[Path]) -> Iterator[Callable[[], float]]:
    """Build the project's virtualenv into the first worker's cache in the background; yield ``finish()``, which
    waits for it, copies it into the other workers' caches and returns the build's seconds.

    What a worker image or a provisioning step does in production: the workers find the virtualenv of
    ``VirtualenvExecution(requirements=...)`` in their cache (same key: same requirements, interpreter and core)
    and only look it up. Building it in the first task instead costs 30-90 s per worker on 2 cores (bytecode
    compilation of MLflow, pandas and scikit-learn), which the integration tier already measures
    (``tests/integration/test_virtualenv_mode.py``).
    """
    folder = root / "provision"
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text(PROJECT_REQUIREMENTS)
    log = folder / "build.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AIRFLOW", "VIRTUAL_ENV"))}
    started = time.perf_counter()
    first = project_venv_cache(worker_roots[0])
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _PROVISION, str(folder / "requirements.txt"), str(first)],
            env=environ, cwd=folder, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def finish() -> float:
        if process.wait(timeout=900) != 0:
            raise TopologyError(f"building the project virtualenv failed ({process.returncode}):\n{_tail(log)}")
        seconds = time.perf_counter() - started
        for worker_root in worker_roots[1:]:
            shutil.copytree(first / "venvs", project_venv_cache(worker_root) / "venvs", symlinks=True)
        return seconds

    try:
        yield finish
    finally:
        stop_process_group(process)


def uv_cache_dir() -> str:
    """uv's package cache as this machine configures it (kept when a worker gets its own ``XDG_CACHE_HOME``)."""
    done = subprocess.run(["uv", "cache", "dir"], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    return os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")


@dataclass(frozen=True)
class CeleryWorker:
    """One worker "machine": its name, directories and process (registered in the deployment as ``worker-<name>``)."""

    name: str
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    @property
    def dags_folder(self) -> Path:
        return self.root / "dags"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def project_pythons(self) -> list[Path]:
        """Interpreters of the project virtualenvs in this worker's cache (``VirtualenvExecution``'s default)."""
        return sorted((project_venv_cache(self.root) / "venvs").glob("*/bin/python"))

    def task_log_files(self, dag_id: str, dag_run_id: str, task_id: str) -> dict[int, Path]:
        """``{try_number: log file}`` of the tries of one task this worker ran (Airflow's default log layout)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={dag_run_id}" / f"task_id={task_id}"
        return {int(path.stem.split("=")[1]): path for path in folder.glob("attempt=*.log")}

    def is_ancestor_of(self, pid: int) -> bool:
        """Whether process ``pid`` descends from this worker's main process (read from ``/proc``)."""
        while pid > 1:
            if pid == self.process.pid:
                return True
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return False
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        return False

    def kill(self) -> None:
        """SIGKILL the worker and every process below it, as when its machine dies: no handler runs, no cleanup."""
        descendants = [pid for pid in _all_pids() if pid != self.process.pid and self.is_ancestor_of(pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in descendants:  # those that left the group (the project's subprocess has its own session)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def start_celery_worker(
    deployment: AirflowDeployment, name: str, root: Path, extra_env: Mapping[str, str]
) -> CeleryWorker:
    """Give worker ``name`` its own home, DAG folder (a fresh copy) and caches, and start ``airflow celery worker``.

    Concurrency 1 and prefetch 1: a worker holds one task at a time, so a queue the two share sends the next task
    to whichever is free. ``--skip-serve-logs``: no log server on 0.0.0.0 (task logs are read from its disk).
    """
    worker = root / f"worker-{name}"
    build_topology_dags_folder(worker / "dags")
    (worker / "airflow-home").mkdir(parents=True)
    env = {
        **deployment.env,
        "AIRFLOW_HOME": str(worker / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(worker / "dags"),
        "XDG_CACHE_HOME": str(worker / "cache"),
        "UV_CACHE_DIR": uv_cache_dir(),
        **extra_env,
    }
    command = [str(Path(sys.executable).parent / "airflow"), "celery", "worker",
               "--queues", ",".join(WORKER_QUEUES[name]), "--concurrency", "1", "--celery-hostname", f"{name}@%h",
               "--skip-serve-logs", "--without-gossip", "--without-mingle"]  # fmt: skip
    process = deployment.start_process(f"worker-{name}", command, env=env, cwd=worker / "airflow-home")
    return CeleryWorker(name=name, root=worker, process=process)


def wait_for_workers(workers: list[CeleryWorker], deployment: AirflowDeployment, timeout: float = 120) -> None:
    """Wait until every worker logged that it is ready to take tasks (Celery's ``... ready.`` line)."""
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if worker.process.poll() is not None:
                raise TopologyError(f"Celery worker {worker.name} exited {worker.process.returncode}\n"
                                    f"{deployment.diagnostics()}")  # fmt: skip
            log = deployment.log_path(f"worker-{worker.name}")
            if log.exists() and " ready." in log.read_text(errors="replace"):
                pending.remove(worker)
        if pending and time.monotonic() > deadline:
            raise TopologyError(f"Celery workers {[w.name for w in pending]} not ready after {timeout:.0f}s\n"
                                f"{deployment.diagnostics()}")  # fmt: skip
        time.sleep(0.3)


# -- the whole topology -------------------------------------------------------------------------------------------
@dataclass
class Topology:
    """The running topology: Airflow's REST client, MLflow, PostgreSQL and the workers by name."""

    airflow: AirflowDeployment
    mlflow: MlflowOnPostgres
    postgres: PostgresServer
    workers: dict[str, CeleryWorker]

    def ran_on(self, dag_id: str, dag_run_id: str, task_id: str) -> dict[int, str]:
        """``{try_number: worker name}`` for every try of a task, from the task logs on the workers' own disks."""
        tries: dict[int, str] = {}
        for name, worker in self.workers.items():
            for try_number in worker.task_log_files(dag_id, dag_run_id, task_id):
                tries[try_number] = name
        return dict(sorted(tries.items()))

    def task_log(self, dag_id: str, dag_run_id: str, task_id: str, try_number: int) -> str:
        """The log of one try, read on the worker that ran it (workers serve no logs: ``--skip-serve-logs``)."""
        for worker in self.workers.values():
            path = worker.task_log_files(dag_id, dag_run_id, task_id).get(try_number)
            if path is not None:
                return path.read_text(errors="replace")
        return f"<no log of {task_id} try {try_number} on any worker>"

    def all_task_logs(self, dag_id: str, dag_run_id: str) -> str:
        """Every try's log of every task of a run, headed by task, try and worker: for assertion messages."""
        chunks = []
        for task_id, ti in sorted(self.airflow.task_instances(dag_id, dag_run_id).items()):
            for try_number, worker in self.ran_on(dag_id, dag_run_id, task_id).items():
                text = self.task_log(dag_id, dag_run_id, task_id, try_number)
                chunks.append(f"===== {task_id} try {try_number} on worker {worker} ({ti['state']}) =====\n{text}")
        return "\n".join(chunks)

    def assert_run_succeeded(self, dag_id: str, dag_run_id: str, timeout: float = 300.0) -> None:
        state = self.airflow.wait_for_run(dag_id, dag_run_id, timeout=timeout)
        assert state in RUN_FINISHED
        assert state == "success", f"{dag_id}/{dag_run_id} ended {state}:\n{self.all_task_logs(dag_id, dag_run_id)}"

    def query(self, database: str, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of ``sql`` on one of the PostgreSQL databases (to check what really lives there)."""
        import psycopg2

        uri = self.postgres.uri(database, driver="postgresql")
        with contextlib.closing(psycopg2.connect(uri)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())


class _Stopwatch:
    """Seconds per start-up step, printed with ``-s``: where the topology's start-up time goes."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: list[str] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append(f"{name} {now - self.last:.1f} s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.laps)


#: Airflow settings of the topology on top of ``airflow_deployment``'s (see the module docstring).
def _airflow_settings(postgres: PostgresServer, broker_url: str, mlflow: MlflowOnPostgres) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow.airflow_conn_uri(),
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.uri("airflow", driver="postgresql"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        # Sending a task to Redis may take more than the default 1 s on a busy 2-core machine.
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
        # A worker that died stops heartbeating its task: fail that try after 20 s (default 300 s), then retry.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }


@contextlib.contextmanager
def production_topology(root: Path, dag_ids: list[str], extra_env: Mapping[str, str]) -> Iterator[Topology]:
    """Start PostgreSQL, Redis, MLflow, Airflow (CeleryExecutor) and workers ``a`` and ``b``; stop all afterwards.

    :param extra_env: for every Airflow process and task (e.g. the e2e signal directory).
    """
    with contextlib.ExitStack() as stack:
        clock = _Stopwatch()
        provisioned = stack.enter_context(
            provisioning_project_venv(root, [root / f"worker-{name}" for name in WORKER_QUEUES])
        )
        postgres = stack.enter_context(postgres_server(("airflow", "mlflow")))
        broker_url = stack.enter_context(redis_server(root / "redis"))
        clock.lap("postgresql and redis")
        # MLflow creates its tables while Airflow migrates its own, and the workers boot with the scheduler.
        mlflow = stack.enter_context(mlflow_on_postgres(root / "mlflow", postgres.uri("mlflow")))
        workers: dict[str, CeleryWorker] = {}

        def start_workers(deployment: AirflowDeployment) -> None:
            workers.update({name: start_celery_worker(deployment, name, root, {}) for name in WORKER_QUEUES})

        airflow = stack.enter_context(
            airflow_deployment(
                root / "scheduler" / "airflow-home",
                build_topology_dags_folder(root / "scheduler" / "dags"),
                extra_env={**_airflow_settings(postgres, broker_url, mlflow), **extra_env},
                dag_ids=dag_ids,
                executor="CeleryExecutor",
                database_uri=postgres.uri("airflow"),
                on_start=start_workers,
            )
        )
        clock.lap("airflow")
        mlflow.wait_ready()
        clock.lap("mlflow (after airflow)")
        wait_for_workers(list(workers.values()), airflow)
        clock.lap("celery workers (after airflow)")
        build_seconds = provisioned()
        clock.lap(f"project virtualenv (built in {build_seconds:.1f} s, then copied)")
        print(f"\nproduction topology started: {clock}")
        yield Topology(airflow=airflow, mlflow=mlflow, postgres=postgres, workers=workers)


# -- a fresh environment from a model's own requirements ---------------------------------------------------------
def fresh_environment(requirements: Path, root: Path) -> Path:
    """A new virtualenv with exactly ``requirements`` (a logged model's ``requirements.txt``), built with uv.

    This interpreter's Python version (the model's ``python_env.yaml`` names the same); nothing of Airflow's or the
    project's environment. uv's package cache makes it take seconds when the packages were downloaded before.
    """
    venv = root / "model-env"
    for command in (
        ["uv", "venv", "--quiet", "--python", sys.executable, str(venv)],
        ["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r", str(requirements)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise TopologyError(f"`{' '.join(command[:3])} ...` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return venv / "bin" / "python"


def run_json(python: Path, script: str, *args: str, env: Mapping[str, str], cwd: Path) -> object:
    """Run ``script`` with ``python`` (no ``PYTHONPATH``; ``cwd`` keeps the checkout off its path) and return the
    JSON object its last stdout line holds."""
    import json

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "AIRFLOW", "VIRTUAL_ENV"))}
    environ.update(env)
    done = subprocess.run(
        [str(python), "-c", script, *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise TopologyError(f"{python} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
