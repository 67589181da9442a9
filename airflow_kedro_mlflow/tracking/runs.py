"""MLflow experiments and runs: the one run lifecycle used by training, modelify, the Kedro hook and the dataset.

:func:`run_scope` has one set of rules for every caller:

- an MLflow run already active in this process (``kedro run`` inside ``mlflow.start_run()``, a dataset saved during a
  hooked run) is used as it is and never ended here; it only gets the tags it lacks;
- a ``run_id`` is resumed and ended afterwards (a shared run: the caller's work *is* that run's work);
- otherwise a new run is started in the experiment;
- a run this scope started or resumed ends ``FINISHED``, or ``FAILED`` when the block raised anything, a killed task
  included (Airflow raises a ``BaseException`` into it). ``delete_on_failure`` deletes a run the scope created, so a
  failed call leaves no empty run behind.

Logging a model next to an existing run without touching it (modelify and the training run) does not need a scope
at all: see :mod:`airflow_kedro_mlflow.modelify.build`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow_kedro_mlflow.exceptions import MlflowConnectionError, MlflowRunConflictError, MlflowRunNotFoundError
from airflow_kedro_mlflow.tracking.tags import FAILED_REASON_TAG, RETRY_IDENTITY_TAGS, clean_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from airflow_kedro_mlflow.tracking.config import TrackingConfig

logger = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """Return the id of MLflow experiment ``name``, creating it when missing.

    Two tasks creating the same experiment at once both end up with its one id. A deleted experiment is not
    silently recreated (MLflow refuses the name anyway): the error says how to restore it.

    :raises MlflowConnectionError: the experiment is deleted, or the server refused the call.
    """
    from mlflow.exceptions import MlflowException

    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
    except MlflowException as exc:
        raise MlflowConnectionError(f"could not get or create MLflow experiment {name!r}: {exc.message}") from exc
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise MlflowConnectionError(
            f"MLflow experiment {name!r} is deleted. Restore it in the MLflow UI (or `mlflow experiments restore "
            f"--experiment-id {getattr(experiment, 'experiment_id', '?')}`), or use another experiment name."
        )
    return str(experiment.experiment_id)


def get_run(client: MlflowClient, run_id: str) -> Run:
    """Return run ``run_id``; a missing or deleted run is a :class:`MlflowRunNotFoundError` saying what to pass.

    Other failures (server down, credentials refused) propagate as MLflow raised them, for the caller to wrap.
    """
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if (getattr(exc, "error_code", "") or "") in _NOT_FOUND_CODES:
            raise MlflowRunNotFoundError(
                f"MLflow run {run_id!r} does not exist on this tracking server. Pass the id of an existing run "
                "(see the MLflow UI), or leave run_id unset to start a new run."
            ) from exc
        raise
    if run.info.lifecycle_stage == "deleted":
        raise MlflowRunNotFoundError(
            f"MLflow run {run_id!r} is deleted. Restore it in the MLflow UI, or leave run_id unset to start a new run."
        )
    return run


@contextmanager
def run_scope(
    client: MlflowClient,
    *,
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, object] | None = None,
    delete_on_failure: bool = False,
) -> Iterator[Run]:
    """Make an MLflow run active for the block, by the rules of this module; yield it.

    :param client: a client of the same server as MLflow's fluent API (inside ``TrackingConfig.activate()``).
    :param run_id: resume this run; it must exist.
    :param experiment_id: experiment of a new run; required unless a run is active or ``run_id`` is given.
    :param tags: set on a new run; a joined or resumed run only gets the ones it lacks (what an earlier step
        recorded, e.g. the task id of the try that trained, is never overwritten).
    :param delete_on_failure: delete a run this scope created when the block raises.
    :raises MlflowRunConflictError: another run than ``run_id`` is active in this process.
    :raises MlflowRunNotFoundError: ``run_id`` does not exist.
    """
    import mlflow

    wanted = clean_tags(tags)
    active = mlflow.active_run()
    if active is not None:
        if run_id not in (None, active.info.run_id):
            raise MlflowRunConflictError(
                f"MLflow run {active.info.run_id} is already active in this process, so run {run_id} cannot be "
                f"used. End the active run first, or pass run_id={active.info.run_id!r}."
            )
        joined = client.get_run(active.info.run_id)
        _add_missing_tags(client, joined, wanted)
        yield joined
        return
    if run_id is not None:
        existing = get_run(client, run_id)
        mlflow.start_run(run_id=run_id)
        _add_missing_tags(client, existing, wanted)
        run = client.get_run(run_id)  # with the tags just added
        created = False
    else:
        if experiment_id is None:
            raise MlflowRunConflictError("run_scope needs an experiment_id to start a new MLflow run.")
        run = _start_new_run(client, experiment_id, run_name, wanted)
        created = True
    run_id = run.info.run_id
    try:
        yield run
    except BaseException:
        _end_failed_run(run_id)
        if created and delete_on_failure:
            _delete_run(client, run_id)
        raise
    mlflow.end_run(status="FINISHED")


def _start_new_run(client: MlflowClient, experiment_id: str, run_name: str | None, tags: dict[str, str]) -> Run:
    """Start a new run and make it this thread's active run: ``mlflow.start_run``, without a git lookup it need not do.

    ``mlflow.start_run`` resolves run-context tags, git ones included: it imports GitPython and searches for a git
    repository around the process's entry script (``sys.argv[0]``). For a task that script is Airflow's (for
    ``kedro run`` Kedro's), usually outside any repository, and the search then costs 0.06 s of CPU and 0.2 s of wall
    time to find nothing. When no directory above the script holds a repository, this creates the run with the
    context tags MLflow resolves without its git provider (the same tags: that provider has none to give) and
    pushes it onto MLflow's run stack, as ``start_run`` does last; the run the server returned is yielded as it is,
    with no second read. Otherwise, or when ``start_run`` would do more (resume ``MLFLOW_RUN_ID``, start the system
    metrics monitor), ``mlflow.start_run`` is called as it is.
    """
    import mlflow
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING, MLFLOW_RUN_ID

    if MLFLOW_RUN_ID.defined or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get() or _entry_script_may_be_in_git_repo():
        started = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags or None)
        return client.get_run(started.info.run_id)
    from mlflow.tracking.context.git_context import GitRunContext
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    user_tags = {**tags, MLFLOW_RUN_NAME: run_name} if run_name else dict(tags)
    # `ignore` takes provider classes (MLflow checks isinstance against them), whatever its type hint says.
    context_tags = resolve_tags(user_tags, ignore=[GitRunContext])  # type: ignore[list-item]
    run = client.create_run(experiment_id, tags=context_tags, run_name=run_name)
    _thread_run_stack().append(mlflow.ActiveRun(run))  # mlflow.end_run takes it off again
    return run


#: Variables that point git (and GitPython) at a repository elsewhere than the directories above a path.
_GIT_LOCATION_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")


def _entry_script_may_be_in_git_repo() -> bool:
    """Whether MLflow's git run context could find a repository for the entry script (``sys.argv[0]``).

    A superset of what it finds (GitPython's ``Repo(path, search_parent_directories=True)``): a ``.git`` entry, or a
    ``HEAD`` file (a bare repository), in the script's folder or any folder above it; a path with ``$`` or ``~`` in
    it (GitPython expands them) or a ``GIT_*`` location variable counts as a repository too. Only stats, no git.
    """
    script = sys.argv[0] if sys.argv and sys.argv[0] else None
    if script is None:
        return False
    if "$" in script or "~" in script or any(os.environ.get(name) for name in _GIT_LOCATION_VARIABLES):
        return True
    folder = os.path.dirname(os.path.abspath(script)) if os.path.isfile(script) else script
    if not os.path.exists(folder):  # MLflow looks the script up as given: "-c" or a vanished file has no repository
        return False
    current = os.path.abspath(folder)
    while True:
        if os.path.lexists(os.path.join(current, ".git")) or os.path.isfile(os.path.join(current, "HEAD")):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def fail_superseded_runs(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> list[str]:
    """Mark FAILED the runs an earlier, killed try of this same task left RUNNING; return their ids.

    A worker killed with SIGKILL (OOM, node lost) cannot end its MLflow run; the retry is the first code that runs
    for that task again, and only one try of a task (dag, dag run, task, *map index*) runs at a time, so any RUNNING
    run with the same identity and an earlier try number belongs to a dead try. Runs of other mapped instances of the
    same task, or of a later try, are never touched.
    """
    from airflow_kedro_mlflow.tracking.tags import identity_token_tags, try_number

    identity = identity_token_tags(tags)
    if identity is None or any("'" in value for value in identity.values()):  # a quote cannot go in the filter
        return []
    current_try = try_number(tags)
    conditions = [f"tags.`{key}` = '{identity[key]}'" for key in RETRY_IDENTITY_TAGS]
    conditions.append("attributes.status = 'RUNNING'")
    failed = []
    for stale in client.search_runs([experiment_id], filter_string=" and ".join(conditions), max_results=100):
        stale_try = try_number(stale.data.tags)
        if current_try is not None and stale_try is not None and stale_try >= current_try:
            continue
        client.set_tag(stale.info.run_id, FAILED_REASON_TAG, "superseded by a retry of this task")
        client.set_terminated(stale.info.run_id, status="FAILED")
        logger.warning(
            "MLflow run %s of an earlier try of this task was still RUNNING (its worker died): marked FAILED.",
            stale.info.run_id,
        )
        failed.append(stale.info.run_id)
    return failed


def _add_missing_tags(client: MlflowClient, run: Run, tags: Mapping[str, str]) -> None:
    missing = {key: value for key, value in tags.items() if key not in run.data.tags}
    for key, value in missing.items():
        client.set_tag(run.info.run_id, key, value)


def _end_failed_run(run_id: str) -> None:
    """End the active run as FAILED, best effort: the error that failed the block matters more than this one.

    MLflow takes the run off this process's run stack before it calls the server, so even when the server is down
    no run stays active here; the run itself then stays RUNNING until a retry marks it (:func:`fail_superseded_runs`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.end_run(status="FAILED")
    except (MlflowException, OSError) as exc:
        logger.warning("Could not mark MLflow run %s FAILED: %s", run_id, getattr(exc, "message", None) or exc)


def _delete_run(client: MlflowClient, run_id: str) -> None:
    """Best-effort cleanup after a failure: the original error matters more than a failed delete."""
    from mlflow.exceptions import MlflowException

    try:
        client.delete_run(run_id)
        logger.info("Deleted MLflow run %s created by this failed call", run_id)
    except (MlflowException, OSError) as exc:
        logger.warning(
            "Could not delete MLflow run %s after a failure: %s", run_id, getattr(exc, "message", None) or exc
        )


def share_run_with_thread(run: Run) -> bool:
    """Make ``run`` the active MLflow run of the calling thread when that thread has none; return whether it did.

    MLflow's active run is thread-local, so a node that a ``ThreadRunner`` runs in a worker thread sees no run:
    its ``mlflow.log_metric`` would start a stray run, and ``mlflow.active_run()`` returns None there. MLflow has no
    public way to make a run another thread started active in this one without a server call
    (``mlflow.start_run(run_id=...)`` fetches the run, sets it RUNNING again, and its ``end_run`` would end it for
    the run's owner), so this pushes the run onto this thread's run stack: no server call, nothing ended.
    Undo it with :func:`unshare_run_with_thread` when the thread's work for the run is done.
    """
    stack = _thread_run_stack()
    if stack:
        return False
    stack.append(run)
    return True


def unshare_run_with_thread(run_id: str) -> None:
    """Take run ``run_id`` off the calling thread's run stack again, without ending it (its owner ends it)."""
    stack = _thread_run_stack()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()


class ThreadSharedRun:
    """One run shared with the threads Kedro runs nodes and saves outputs in (``ThreadRunner``'s pool).

    A Kedro hook calls :meth:`enter` before a node runs and before each of its outputs is saved (Kedro 1.x saves
    them after ``after_node_run``, and a tracking dataset logs during the save), and :meth:`leave` after each. Only
    a thread this object made the run active in gives it up again: in the thread that owns the run, nothing changes.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._local = threading.local()  # .shared: this object put the run on this thread's stack

    def enter(self) -> None:
        """Make the run the calling thread's active run, if that thread has none."""
        if not getattr(self._local, "shared", False):
            self._local.shared = share_run_with_thread(self.run)

    def leave(self) -> None:
        """Take the run off the calling thread's stack again if :meth:`enter` put it there."""
        if getattr(self._local, "shared", False):
            self._local.shared = False
            unshare_run_with_thread(self.run.info.run_id)


def _thread_run_stack() -> list[Run]:
    """MLflow's run stack of the calling thread: the list ``mlflow.active_run()`` reads its last item from.

    The package's one use of a private MLflow name (``mlflow.tracking.fluent._active_run_stack``, a per-thread
    ``ThreadLocalVariable`` holding a list; checked against MLflow 3.17): see :func:`share_run_with_thread` and
    :func:`_start_new_run` for why no public API does what they do. Kept in this one function so an MLflow upgrade
    that moves it breaks one place.
    """
    from mlflow.tracking import fluent

    stack: list[Run] = fluent._active_run_stack.get()
    return stack


def fail_run_if_running(tracking: TrackingConfig, run_id: str, reason: str) -> None:
    """Mark MLflow run ``run_id`` FAILED if it is still RUNNING (its process died before it could), best effort."""
    from mlflow.exceptions import MlflowException

    try:
        with tracking.activate():
            client = tracking.client()
            if client.get_run(run_id).info.status != "RUNNING":
                return
            client.set_tag(run_id, FAILED_REASON_TAG, reason)
            client.set_terminated(run_id, status="FAILED")
        logger.warning("MLflow run %s was left RUNNING (%s): marked FAILED.", run_id, reason)
    except (MlflowException, OSError) as exc:
        logger.warning(
            "Could not mark MLflow run %s FAILED (%s); the next try of this task will: %s",
            run_id,
            reason,
            getattr(exc, "message", None) or exc,
        )
