"""What the tracking datasets share: the run they write to, the catalog name they stand for, refused arguments.

kedro-mlflow's tracking datasets log into ``mlflow.active_run()`` and, when they have no ``key``/``prefix``, use their
catalog name (its Kedro hook fills that in). Here the run is the same active run — the training run of
``run_training``/``KedroTrainingOperator`` (shared with ``ThreadRunner`` threads), or the run ``PipelineMLHook``
starts for ``kedro run`` — and the catalog name is read from the ``DataCatalog`` call in progress, so a
kedro-mlflow catalog works unchanged without kedro-mlflow's hook. No run active is an error: MLflow would otherwise
start a stray run of its own.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from kedro.io import DatasetError

#: What to do when no MLflow run is active, for the error messages.
START_A_RUN = (
    "Run the pipeline under airflow-kedro-mlflow (KedroTrainingOperator / run_training, or `kedro run "
    "--pipelines <PipelineML>` with PipelineMLHook in settings.py HOOKS), start one yourself with "
    "mlflow.start_run(), or set run_id in its catalog entry."
)


def catalog_name(dataset: Any) -> str | None:
    """The name a ``DataCatalog.load/save/exists`` call in progress uses for ``dataset``; None outside a catalog call.

    Kedro passes a dataset no name, and kedro-mlflow relies on its own hook to set ``key`` to the catalog name. The
    name is known only to the catalog method calling the dataset: Kedro 1.x's ``DataCatalog.load/save/exists`` hold
    it as ``ds_name`` next to ``dataset``, so the calling frames are searched for that pair. Should Kedro rename
    them, the lookup finds nothing and the error asks for an explicit ``key``.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            local = frame.f_locals
            if local.get("dataset") is dataset and isinstance(local.get("ds_name"), str):
                return str(local["ds_name"])
            frame = frame.f_back
    finally:
        del frame
    return None


def run_id_to_use(label: str, run_id: str | None) -> str:
    """``run_id`` when the catalog gives one, else the active MLflow run's id.

    :param label: the dataset as the error should name it, e.g. ``MlflowMetricDataset 'accuracy'``.
    :raises DatasetError: no ``run_id`` and no active run (saying how to get one), or no tracking URI set for an
        explicit ``run_id`` (MLflow's implicit ``./mlflow.db`` is never used).
    """
    import mlflow

    if run_id is not None:
        if not mlflow.is_tracking_uri_set():
            raise DatasetError(
                f"{label} has run_id={run_id!r} but no MLflow tracking server: set MLFLOW_TRACKING_URI (or call "
                "mlflow.set_tracking_uri). MLflow's implicit ./mlflow.db is not used."
            )
        return run_id
    active = mlflow.active_run()
    if active is None:
        raise DatasetError(f"{label} has no MLflow run to log into or read from: no run is active. {START_A_RUN}")
    return active.info.run_id


def refuse_unsupported(
    label: str, given: Mapping[str, Any], alternatives: Mapping[str, str], valid: Iterable[str]
) -> None:
    """Raise a ``DatasetError`` for the first argument of ``given`` (sorted), saying what to use instead.

    :param given: arguments the dataset does not take (an empty mapping passes).
    :param alternatives: kedro-mlflow arguments that are known but not supported here -> what to do instead.
    :param valid: the arguments the dataset does take, for close-match suggestions.
    """
    if not given:
        return
    names = sorted(given)
    name = names[0]
    if name in alternatives:
        raise DatasetError(f"{label}: {name}={given[name]!r} is not supported. {alternatives[name]}")
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise DatasetError(f"{label}: unknown argument(s) {names}.{hint} Valid arguments: {sorted(valid)}.")


def describe(name: str | None, type_name: str, detail: str | None) -> str:
    """``MlflowMetricDataset 'accuracy'``: the dataset's type and the name it is known by, for messages."""
    shown = name or detail
    return f"{type_name} {shown!r}" if shown else type_name
