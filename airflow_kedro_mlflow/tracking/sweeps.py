"""Sweeps: the trainings of one mapped task as nested runs of one parent run, and picking the best of them.

A hyper-parameter sweep in Airflow is a mapped training task (``KedroTrainingOperator.partial(...).expand(
runtime_params=[...])``): each map index is a distinct task with its own MLflow run. MLflow shows such runs as one
sweep when they carry the ``mlflow.parentRunId`` tag of a common parent run, which this module gets or creates once
per sweep identity (dag id, dag run id, task id: every map index and every try of the same task shares it). Mapped
instances start at the same time on several workers, so the creation is race-safe: a racer that finds runs besides
its own keeps the earliest and deletes its own, and every racer ends up with the same parent.

The parent's status follows its children (:func:`settle_sweep`): RUNNING while one runs, FINISHED once none runs and
one finished, FAILED when all failed. :func:`best_run` picks the child with the best metric, for modelify.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow_kedro_mlflow.exceptions import SweepError
from airflow_kedro_mlflow.tracking.tags import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    KEDRO_SESSION_TAG,
    MAP_INDEX_TAG,
    TASK_ID_TAG,
    TRY_NUMBER_TAG,
    clean_tags,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

#: MLflow's own tag for a nested run's parent: the MLflow UI groups runs under their parent by it.
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
#: Tag on a sweep's parent run (value ``parent``): what the parent search looks for, next to the identity tags.
SWEEP_TAG = "airflow_kedro_mlflow.sweep"
#: Tag on a sweep's parent run: the child run that modelify selected as the best.
BEST_RUN_TAG = "airflow_kedro_mlflow.best_run_id"
#: The tags that identify one sweep: every map index and every try of one task in one dag run.
SWEEP_IDENTITY_TAGS = (DAG_ID_TAG, DAG_RUN_ID_TAG, TASK_ID_TAG)

_ACTIVE_STATUSES = frozenset({"RUNNING", "SCHEDULED"})
_CHILD_ONLY_TAGS = frozenset({MAP_INDEX_TAG, TRY_NUMBER_TAG, KEDRO_SESSION_TAG})


def sweep_identity(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The :data:`SWEEP_IDENTITY_TAGS` among ``tags``, or None unless all are there (a run outside Airflow)."""
    identity = {key: str(tags[key]) for key in SWEEP_IDENTITY_TAGS if tags.get(key) not in (None, "")}
    return identity if len(identity) == len(SWEEP_IDENTITY_TAGS) else None


def sweep_parent_run(
    client: MlflowClient,
    experiment_id: str,
    identity: Mapping[str, str],
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Run:
    """Return the parent run of sweep ``identity`` in ``experiment_id``, creating it when there is none yet.

    Race-safe between the map indexes starting at once: after creating its run, a caller searches again and keeps
    the earliest parent (start time, then run id), deleting its own when it lost. This relies on the workers' clocks
    agreeing to better than the time between two creations, as Airflow's heartbeats already do.

    :param identity: the sweep's :data:`SWEEP_IDENTITY_TAGS` and values.
    :param tags: more tags for a new parent (Kedro env, pipeline); the identity and :data:`SWEEP_TAG` are added, a
        map index, try number and Kedro session dropped (they are one child's: a retry of that child must not take
        the parent for its own earlier try).
    :raises SweepError: ``identity`` lacks one of the identity tags, or has a value the search cannot hold.
    """
    _check_identity(identity)
    found = _parent_runs(client, experiment_id, identity)
    if found:
        return found[0]
    shared = {key: value for key, value in (tags or {}).items() if key not in _CHILD_ONLY_TAGS}
    parent_tags = clean_tags({**shared, **identity, SWEEP_TAG: "parent"})
    created = client.create_run(experiment_id, tags=parent_tags, run_name=run_name)
    winner = _parent_runs(client, experiment_id, identity)[0]
    if winner.info.run_id != created.info.run_id:
        logger.info("Another task created the sweep's parent run %s first: using it.", winner.info.run_id)
        client.delete_run(created.info.run_id)
    else:
        logger.info("Sweep parent run %s (%s)", created.info.run_id, _describe(identity))
    return winner


@contextmanager
def sweep_trial(client: MlflowClient, parent: Run | None) -> Iterator[None]:
    """Mark the sweep's parent RUNNING for the block (a child's run), and settle it afterwards, best effort.

    Nothing happens for ``parent=None`` (a run outside a sweep). Settling never hides the block's own error.
    """
    if parent is None:
        yield
        return
    from mlflow.exceptions import MlflowException

    if client.get_run(parent.info.run_id).info.status not in _ACTIVE_STATUSES:
        client.update_run(parent.info.run_id, status="RUNNING")
    try:
        yield
    finally:
        try:
            settle_sweep(client, parent)
        except (MlflowException, OSError) as exc:
            logger.warning(
                "Could not settle the status of sweep parent run %s (the next trial will): %s",
                parent.info.run_id,
                getattr(exc, "message", None) or exc,
            )


def settle_sweep(client: MlflowClient, parent: Run) -> str:
    """Set the parent's status from its children's, and return it: RUNNING, FINISHED or FAILED.

    Each child settles after it ended its own run (:func:`sweep_trial`), so the last one to settle sees every other
    child's end.
    """
    children = child_runs(client, parent)
    statuses = {child.info.status for child in children}
    if statuses & _ACTIVE_STATUSES:
        return "RUNNING"
    status = "FINISHED" if "FINISHED" in statuses else "FAILED"
    client.set_terminated(parent.info.run_id, status=status)
    return status


def child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The (not deleted) runs nested under ``parent``."""
    filter_string = f"tags.`{PARENT_RUN_ID_TAG}` = '{parent.info.run_id}'"
    return list(client.search_runs([parent.info.experiment_id], filter_string=filter_string, max_results=1000))


def best_run(
    client: MlflowClient,
    run_ids: Sequence[str],
    metric: str,
    *,
    greater_is_better: bool = True,
    identity: Mapping[str, str] | None = None,
) -> tuple[Run, float]:
    """Return the finished run among ``run_ids`` with the best value of ``metric``, and that value.

    Ties go to the earlier run in ``run_ids`` (the lower map index). Runs that did not finish, or lack the metric,
    are not candidates; those lacking it are named in a warning. The winner's parent, if any, gets the winner in
    :data:`BEST_RUN_TAG` and its metric value, so the sweep shows its result in the MLflow UI.

    :param run_ids: the candidates, e.g. the run ids the mapped training tasks published (untrusted: see identity).
    :param identity: when given, every candidate must carry these tags (the sweep's task identity), so a run id
        from elsewhere (a changed XCom) is refused rather than selected.
    :raises SweepError: no candidate finished with the metric, or a candidate belongs to another task.
    """
    best: tuple[Run, float] | None = None
    finished: list[str] = []
    without_metric: list[str] = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        for key, expected in (identity or {}).items():
            if run.data.tags.get(key) != expected:
                raise SweepError(
                    f"MLflow run {run_id} is not a training of this sweep ({_describe(identity or {})}): its "
                    f"{key} tag is {run.data.tags.get(key)!r}. The training XCom was changed after the task ran; "
                    "clear and re-run the training task."
                )
        if run.info.status != "FINISHED":
            continue
        finished.append(run_id)
        value = run.data.metrics.get(metric)
        if value is None:
            without_metric.append(run_id)
            continue
        if best is None or (value > best[1] if greater_is_better else value < best[1]):
            best = (run, value)
    if without_metric:
        logger.warning("Runs %s have no metric %r: not candidates.", ", ".join(without_metric), metric)
    if best is None:
        if not finished:
            raise SweepError(
                f"no training run of the sweep finished ({len(run_ids)} published a result), so there is no best "
                "run to choose: every child failed. See the failed training tasks' logs, fix the cause, and clear "
                "them."
            )
        raise SweepError(
            f"none of the finished training runs {sorted(finished)} has metric {metric!r}, so there is no best run "
            "to choose. Log it in a training node (mlflow.log_metric) or pass the name of a metric they log."
        )
    run, value = best
    parent_id = run.data.tags.get(PARENT_RUN_ID_TAG)
    if parent_id:
        client.set_tag(parent_id, BEST_RUN_TAG, run.info.run_id)
        client.log_metric(parent_id, metric, value)
    logger.info("Best run of the sweep by %s: %s (%s)", metric, run.info.run_id, value)
    return best


def _parent_runs(client: MlflowClient, experiment_id: str, identity: Mapping[str, str]) -> list[Run]:
    conditions = [f"tags.`{key}` = '{value}'" for key, value in sorted(identity.items())]
    conditions.append(f"tags.`{SWEEP_TAG}` = 'parent'")
    runs = client.search_runs([experiment_id], filter_string=" and ".join(conditions), max_results=100)
    return sorted(runs, key=lambda run: (run.info.start_time or 0, run.info.run_id))


def _check_identity(identity: Mapping[str, str]) -> None:
    missing = [key for key in SWEEP_IDENTITY_TAGS if not identity.get(key)]
    if missing:
        raise SweepError(f"a sweep is identified by tags {list(SWEEP_IDENTITY_TAGS)}; missing: {missing}.")
    quoted = sorted(key for key, value in identity.items() if "'" in str(value))
    if quoted:
        raise SweepError(f"sweep tag(s) {quoted} contain a quote, which an MLflow run search cannot match.")


def _describe(identity: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(identity.items()))
