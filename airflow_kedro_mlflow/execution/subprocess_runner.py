"""Run one ``airflow-kedro-mlflow`` CLI command in the project's environment, as a child process of the worker.

- The child's output (stdout and stderr, merged) is logged line by line as it comes, at the level the line starts
  with (``WARNING ...`` stays a warning), so the task log shows the training as it happens.
- It works in the worker's current directory, as in-process training does (a relative ``sqlite:///`` store keeps
  its artifacts in ``./mlruns`` there).
- The result is the JSON file the CLI writes with ``--output`` (atomically): the same payload as in-process.
- A failure is re-raised as the error class the CLI named (``Error: KedroRunError: ...``), so a task fails the same
  way in every mode, with the project environment named in the message.
- The child runs in its own process group (a node's subprocesses too) and gets SIGTERM if the worker process
  dies. When the caller is interrupted (Airflow's ``on_kill`` raises into it, a timeout, Ctrl-C) the group gets
  SIGTERM — the CLI then raises into the run, which ends FAILED — and SIGKILL after :data:`TERMINATE_GRACE_SECONDS`.
- Whatever happened, a training run the child announced and left RUNNING (SIGKILL, out of memory) is marked
  FAILED here, with the reason as a tag.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_kedro_mlflow import exceptions
from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError, ProjectProcessError
from airflow_kedro_mlflow.execution.commands import CLI_MODULE, parse_run_started
from airflow_kedro_mlflow.tracking.runs import fail_run_if_running

if TYPE_CHECKING:
    from airflow_kedro_mlflow.execution.environment import ProjectEnvironment
    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: Seconds a child gets between SIGTERM and SIGKILL: enough to mark its MLflow run FAILED (one request), and less
#: than the 5 s Airflow's supervisor gives the task process itself before it escalates.
TERMINATE_GRACE_SECONDS = 3.0
#: Lines of the child's output kept to explain a failure.
_TAIL_LINES = 40
#: The level a child's log line starts with, as the number ``logger.log`` takes.
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_LEVEL = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
_ERROR_LINE = re.compile(r"^Error: (?:(?P<kind>[A-Za-z_][A-Za-z0-9_]*): )?(?P<message>.*)$")
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def result_file() -> Iterator[Path]:
    """A path for the CLI's ``--output`` in a private temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="akm-cli-") as directory:
        yield Path(directory) / "result.json"


def run_cli(
    environment: ProjectEnvironment,
    argv: Sequence[str],
    *,
    output: Path,
    tracking: TrackingConfig,
    on_run_start: Callable[[str, str | None], None] | None = None,
) -> dict[str, Any]:
    """Run ``python -m airflow_kedro_mlflow.cli <argv>`` in ``environment``; return the payload it wrote to ``output``.

    :param argv: the command's arguments, from :mod:`~airflow_kedro_mlflow.execution.commands` (no secrets).
    :param output: the file ``argv`` names after ``--output``.
    :param tracking: the server the child talks to: its credentials go into the child's environment only, and it
        is used here to mark FAILED a run the child left RUNNING.
    :param on_run_start: called with ``(run_id, run_url)`` when a ``train`` child announces its MLflow run.
    :raises: the package's error class the child reported (e.g. ``KedroRunError``), with the environment named;
        :class:`ProjectProcessError` when the child was killed or wrote no result.
    """
    command = [environment.python, "-m", CLI_MODULE, *argv]
    logger.info("Running in %s: %s", environment.description, " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    run_id: str | None = None
    started = time.perf_counter()
    die_with_parent = _parent_death_signal()
    process = subprocess.Popen(
        command,
        env=environment.environ(tracking),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,  # its own process group: one signal reaches the nodes' subprocesses too
        preexec_fn=die_with_parent,  # noqa: PLW1509 (one prctl call, nothing that takes a lock)
    )
    try:
        assert process.stdout is not None  # stdout=PIPE
        for line in _lines(process.stdout):
            announced = parse_run_started(line)
            if announced is not None:
                run_id = announced[0]
                if on_run_start is not None:
                    on_run_start(*announced)
                continue
            tail.append(line)
            _log_line(line)
        returncode = process.wait()
    except BaseException as interruption:
        reason = f"the task was interrupted ({type(interruption).__name__})"
        _terminate(process)
        if run_id is not None:
            fail_run_if_running(tracking, run_id, reason)
        raise
    logger.info("%s exited %s after %.1f s", environment.description, returncode, time.perf_counter() - started)
    if returncode != 0 and run_id is not None:
        fail_run_if_running(tracking, run_id, f"the training process {_ended(returncode)}")
    if returncode == 0 and output.is_file():
        return json.loads(output.read_text(encoding="utf-8"))
    raise _failure(environment, returncode, list(tail), run_id)


def _lines(stream: IO[str]) -> Iterator[str]:
    """The child's non-blank lines, as they come."""
    for line in stream:
        if line.strip():
            yield line.rstrip("\n")


def _log_line(line: str) -> None:
    match = _LEVEL.match(line)
    if match is None:
        logger.info("%s", line)
    else:
        logger.log(_LEVELS[match.group(1)], "%s", line[match.end() :])


def _terminate(process: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group, then SIGKILL it if the child has not exited within the grace period."""
    if process.poll() is not None:
        _signal_group(process, signal.SIGKILL)  # the child is gone; its leftovers need not linger
        return
    logger.warning("Stopping the project process (pid %s): SIGTERM, SIGKILL after %.0f s", process.pid,
                   TERMINATE_GRACE_SECONDS)  # fmt: skip
    _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(process, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=TERMINATE_GRACE_SECONDS)
    if process.stdout is not None:
        for line in process.stdout.read().splitlines():  # what it said on its way out ("run marked FAILED")
            _log_line(line)


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the worker dies (even by SIGKILL), so no training
    outlives its task (Linux only; elsewhere the next try marks the orphan's run FAILED).

    ``prctl`` is looked up here, in the parent: between ``fork`` and ``exec`` the child must only call it. The
    signal comes when the *thread* that started the child ends: the operator starts it from the task's main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return die_with_parent


def _failure(environment: ProjectEnvironment, returncode: int, tail: list[str], run_id: str | None) -> Exception:
    where = f"[project environment: {environment.description}]"
    run = f" MLflow run {run_id} is marked FAILED." if run_id else ""
    if returncode < 0:
        name = _signal_name(-returncode)
        return ProjectProcessError(
            f"The project process was killed by {name} before it finished {where}.{run} SIGKILL usually means the "
            "kernel ran out of memory (give the worker more, or train on less data) or someone killed it; retry "
            "the task. Its last lines:\n" + "\n".join(tail[-10:])
        )
    reported = reported_error(tail)
    if reported is not None:
        kind, message = reported
        error_class = error_class_for(kind, returncode)
        if kind and error_class.__name__ != kind:  # e.g. "MLflow: ..." or "OSError: ...": keep who said it
            message = f"{kind}: {message}"
        return error_class(f"{message} {where}")
    if returncode == 0:
        return ProjectProcessError(
            f"The project process exited 0 but wrote no result file {where}. Is it this package's CLI?"
        )
    return ProjectProcessError(
        f"The project process exited {returncode} {where}.{run} Its last lines:\n" + "\n".join(tail[-10:])
    )


def reported_error(tail: list[str]) -> tuple[str | None, str] | None:
    """The CLI's one-line error (``Error: Kind: message``) or argparse's (``prog cmd: error: message``)."""
    for line in reversed(tail):
        match = _ERROR_LINE.match(line)
        if match:
            return match.group("kind"), match.group("message")
        if ": error: " in line and line.startswith("airflow-kedro-mlflow"):
            return "CliUsageError", line.split(": error: ", 1)[1]
    return None


def error_class_for(kind: str | None, returncode: int) -> type[Exception]:
    """The package's error class the child named; otherwise by exit code: 2 bad input, anything else a failure."""
    found = getattr(exceptions, kind or "", None)
    if isinstance(found, type) and issubclass(found, exceptions.AirflowKedroMlflowError):
        return found
    return ProjectEnvironmentError if returncode == 2 else ProjectProcessError


def _ended(returncode: int) -> str:
    return f"was killed by {_signal_name(-returncode)}" if returncode < 0 else f"exited with code {returncode}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
