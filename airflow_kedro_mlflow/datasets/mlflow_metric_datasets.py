"""kedro-mlflow's metric datasets, same catalog syntax: a node returns a metric, the catalog logs it to MLflow.

- ``MlflowMetricDataset``: one number (``key``; ``save_args``: ``step``, ``mode`` overwrite/append, ``timestamp``;
  ``load_args``: ``step``).
- ``MlflowMetricHistoryDataset``: one metric's history (``key``; ``mode`` in ``save_args``/``load_args``: ``list``
  ``[v0, v1, …]`` at steps 0, 1, …; ``dict`` ``{step: value}``; ``history`` ``[{"step", "value", "timestamp"}, …]``).
- ``MlflowMetricsHistoryDataset``: several metrics, ``{name: {"value", "step"}}`` or ``{name: [{…}, …]}``,
  logged as ``<prefix>.<name>``.

As with kedro-mlflow (whose hook fills them in), ``key`` and ``prefix`` default to the dataset's catalog name, and
the run is ``run_id`` or the active MLflow run::

    val_loss:
      type: airflow_kedro_mlflow.datasets.MlflowMetricHistoryDataset
      save_args:
        mode: list
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from typing import TYPE_CHECKING, Any, cast

from kedro.io import AbstractDataset, DatasetError

from airflow_kedro_mlflow.datasets.tracking_run import catalog_name, describe, refuse_unsupported, run_id_to_use

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

#: MLflow's limit of metrics per ``log_batch`` call.
_BATCH = 1000
_HISTORY_MODES = ("list", "dict", "history")
_METRIC_MODES = ("overwrite", "append")


class _MetricDataset(AbstractDataset[Any, Any]):
    """A metric (or metric history) named ``key`` in run ``run_id`` or the active run."""

    _LOAD_ARGS: tuple[str, ...] = ()
    _SAVE_ARGS: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        key: str | None = None,
        run_id: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        label = describe(None, type(self).__name__, key)
        refuse_unsupported(label, unsupported, _ALTERNATIVES, ("key", "run_id", "load_args", "save_args", "metadata"))
        self._key = key
        self._run_id = run_id
        self._load_args = deepcopy(load_args or {})
        self._save_args = deepcopy(save_args or {})
        checks = {"load_args": (self._load_args, self._LOAD_ARGS), "save_args": (self._save_args, self._SAVE_ARGS)}
        for kind, (args, valid) in checks.items():
            extra = sorted(set(args) - set(valid))
            if extra:
                raise DatasetError(
                    f"{label}: {kind} {extra} not supported; {kind} of {type(self).__name__} are "
                    f"{list(valid)}. {_ARGS_HINT}"
                )
        self.metadata = metadata
        self._check_modes(label)

    def _check_modes(self, label: str) -> None:
        """Refuse a ``mode`` this dataset does not know, at catalog creation."""

    @property
    def key(self) -> str:
        """The metric's name: ``key``, else the catalog name (as kedro-mlflow's hook sets it)."""
        key = self._key or catalog_name(self)
        if not key:
            raise DatasetError(
                f"{type(self).__name__} has no key: set key in its catalog entry, or use it through a Kedro "
                "DataCatalog (the dataset's name is then the metric's name)."
            )
        return key

    def _label(self) -> str:
        return describe(catalog_name(self), type(self).__name__, self._key)

    def _target(self) -> tuple[MlflowClient, str, str]:
        """The client, the run id and the metric key a load or save uses."""
        import mlflow

        key = self.key
        run_id = run_id_to_use(self._label(), self._run_id)
        return mlflow.MlflowClient(), run_id, key

    def _history(self, client: MlflowClient, run_id: str, key: str) -> list[Metric]:
        return list(client.get_metric_history(run_id, key))

    def _exists(self) -> bool:
        import mlflow

        if self._run_id is None and mlflow.active_run() is None:
            return False
        client, run_id, key = self._target()
        return key in client.get_run(run_id).data.metrics

    def _describe(self) -> dict[str, Any]:
        return {"key": self._key, "run_id": self._run_id, "load_args": self._load_args, "save_args": self._save_args}


class MlflowMetricDataset(_MetricDataset):
    """One metric value: save logs it (at ``step``, or per ``mode``), load returns the last value (at ``step``).

    :param key: metric name; default: the dataset's catalog name.
    :param run_id: run to log into / read from; default: the active MLflow run.
    :param load_args: ``step``: read the last value logged at this step.
    :param save_args: ``step``: log at this step; else ``mode: overwrite`` (default: the last step used, 0 for a new
        metric) or ``mode: append`` (the step after it); ``timestamp`` in milliseconds.
    """

    _LOAD_ARGS = ("step",)
    _SAVE_ARGS = ("step", "mode", "timestamp")

    def _check_modes(self, label: str) -> None:
        mode = self._save_args.get("mode", "overwrite")
        if mode not in _METRIC_MODES:
            raise DatasetError(f"{label}: save_args mode={mode!r} is not one of {list(_METRIC_MODES)}.")

    def load(self) -> float:
        client, run_id, key = self._target()
        history = self._history(client, run_id, key)
        step = self._load_args.get("step")
        values = [metric.value for metric in history if step is None or metric.step == step]
        if not values:
            at = "" if step is None else f" at step {step}"
            raise DatasetError(f"{self._label()}: run {run_id} has no metric {key!r}{at}. Save it first.")
        return values[-1]

    def save(self, data: float | Mapping[str, Any]) -> None:
        """Log ``data``: a number, or ``{"value": …, "step": …}`` (the step given with the value wins)."""
        value, step = _value_and_step(self._label(), data)
        client, run_id, key = self._target()
        if step is None:
            step = self._save_args.get("step")
        if step is None:
            steps = [metric.step for metric in self._history(client, run_id, key)]
            step = (
                max(steps, default=0)
                if self._save_args.get("mode", "overwrite") == "overwrite"
                else (max(steps, default=-1) + 1)
            )
        client.log_metric(run_id, key, value, timestamp=self._save_args.get("timestamp"), step=int(step))


class MlflowMetricHistoryDataset(_MetricDataset):
    """One metric's history, logged at once: ``mode`` (in ``save_args`` and ``load_args``, default ``list``) says how.

    - ``list``: ``[v0, v1, …]``, logged at steps 0, 1, …
    - ``dict``: ``{step: value}``
    - ``history``: ``[{"step": …, "value": …, "timestamp": …}, …]`` (``timestamp`` optional when saving)

    :param key: metric name; default: the dataset's catalog name.
    :param run_id: run to log into / read from; default: the active MLflow run.
    """

    _LOAD_ARGS = ("mode",)
    _SAVE_ARGS = ("mode",)

    def _check_modes(self, label: str) -> None:
        for kind, args in (("load_args", self._load_args), ("save_args", self._save_args)):
            if args.get("mode", "list") not in _HISTORY_MODES:
                raise DatasetError(f"{label}: {kind} mode={args['mode']!r} is not one of {list(_HISTORY_MODES)}.")

    def load(self) -> list[float] | dict[int, float] | list[dict[str, Any]]:
        client, run_id, key = self._target()
        history = self._history(client, run_id, key)
        mode = self._load_args.get("mode", "list")
        if mode == "list":
            return [metric.value for metric in history]
        if mode == "dict":
            return {metric.step: metric.value for metric in history}
        return [{"step": metric.step, "value": metric.value, "timestamp": metric.timestamp} for metric in history]

    def save(self, data: Sequence[float] | Mapping[int, float] | Sequence[Mapping[str, Any]]) -> None:
        mode = self._save_args.get("mode", "list")
        label = self._label()
        entries = _history_entries(label, mode, data)
        client, run_id, key = self._target()
        _log_metrics(client, run_id, [(key, value, step, stamp) for value, step, stamp in entries])


class MlflowMetricsHistoryDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Several metrics at once: ``{name: {"value": v, "step": s}}`` or ``{name: [{"value", "step"}, …]}``.

    Logged as ``<prefix>.<name>``; a load returns the run's metrics whose name starts with ``prefix`` (full names,
    one ``{"step", "value"}`` dict per metric, or a list when it has several values), as kedro-mlflow does.

    :param run_id: run to log into / read from; default: the active MLflow run.
    :param prefix: metric name prefix; default: the dataset's catalog name (as kedro-mlflow's hook sets it).
    """

    def __init__(
        self,
        *,
        run_id: str | None = None,
        prefix: str | None = None,
        metadata: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        refuse_unsupported(
            describe(None, type(self).__name__, prefix), unsupported, _ALTERNATIVES, ("run_id", "prefix", "metadata")
        )
        self._run_id = run_id
        self._prefix = prefix
        self.metadata = metadata

    @property
    def prefix(self) -> str | None:
        """``prefix``, else the catalog name; None when used outside a catalog (then names are logged as given)."""
        return self._prefix or catalog_name(self)

    def _label(self) -> str:
        return describe(catalog_name(self), type(self).__name__, self._prefix)

    def load(self) -> dict[str, Any]:
        import mlflow

        client = mlflow.MlflowClient()
        run_id = run_id_to_use(self._label(), self._run_id)
        prefix = self.prefix
        names = sorted(name for name in client.get_run(run_id).data.metrics if not prefix or name.startswith(prefix))
        loaded: dict[str, Any] = {}
        for name in names:
            history = [
                {"step": metric.step, "value": metric.value} for metric in client.get_metric_history(run_id, name)
            ]
            loaded[name] = history[0] if len(history) == 1 else history
        return loaded

    def save(self, data: Mapping[str, Any]) -> None:
        import mlflow

        label = self._label()
        if not isinstance(data, Mapping):
            raise DatasetError(
                f"{label} saves a dict {{name: {{'value': v, 'step': s}}}} or {{name: [{{'value': v, 'step': s}}, "
                f"…]}}, got {type(data).__name__}."
            )
        prefix = self.prefix
        rows: list[tuple[str, float, int, int | None]] = []
        for name, item in data.items():
            full = f"{prefix}.{name}" if prefix else str(name)
            items = [item] if isinstance(item, Mapping) else item
            if not isinstance(items, Sequence) or isinstance(items, str) or not items:
                raise DatasetError(
                    f"{label}: metric {name!r} must be {{'value': v, 'step': s}} or a non-empty list of them, got "
                    f"{item!r}."
                )
            for entry in items:
                value, step = _value_and_step(f"{label} metric {name!r}", entry, step_required=True)
                rows.append((full, value, int(step or 0), None))
        run_id = run_id_to_use(label, self._run_id)
        _log_metrics(mlflow.MlflowClient(), run_id, rows)

    def _exists(self) -> bool:
        import mlflow

        if self._run_id is None and mlflow.active_run() is None:
            return False
        run_id = run_id_to_use(self._label(), self._run_id)
        prefix = self.prefix
        return any(not prefix or name.startswith(prefix) for name in mlflow.MlflowClient().get_run(run_id).data.metrics)

    def _describe(self) -> dict[str, Any]:
        return {"run_id": self._run_id, "prefix": self._prefix}


_ALTERNATIVES = {
    "mode": "Put mode in save_args (how a save logs) or load_args (how a load returns), as kedro-mlflow does.",
    "step": "Put step in save_args (log at this step) or load_args (read this step), as kedro-mlflow does.",
    "tracking_uri": "Tracking datasets log into the active MLflow run, on its server; set MLFLOW_TRACKING_URI or "
    "the Airflow connection instead.",
    "credentials": "MLflow credentials come from the Airflow connection or MLFLOW_TRACKING_USERNAME/PASSWORD.",
}
_ARGS_HINT = "Other keys are refused rather than passed on or ignored."


def _value_and_step(label: str, data: Any, *, step_required: bool = False) -> tuple[float, int | None]:
    """A metric value (a finite or infinite number) and its optional step from ``v`` or ``{"value": v, "step": s}``."""
    step = None
    value = data
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - {"value", "step", "timestamp"})
        if "value" not in data or unknown:
            raise DatasetError(
                f"{label}: a metric given as a dict needs 'value' (and 'step'); got keys {sorted(data)}."
            )
        value, step = data["value"], data.get("step")
        if step is None and step_required:
            raise DatasetError(f"{label}: {data!r} has no 'step'; give {{'value': v, 'step': s}}.")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DatasetError(f"{label}: a metric value must be a number, got {type(value).__name__} {value!r}.")
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise DatasetError(f"{label}: a metric step must be an integer, got {step!r}.")
    return float(value), None if step is None else int(step)


def _history_entries(label: str, mode: str, data: Any) -> list[tuple[float, int, int | None]]:
    """``(value, step, timestamp)`` of a metric history given in ``mode``."""
    if mode == "dict":
        if not isinstance(data, Mapping):
            raise DatasetError(f"{label} (mode dict) saves {{step: value}}, got {type(data).__name__}.")
        pairs = [_value_and_step(label, {"value": value, "step": step}) for step, value in data.items()]
        return [(value, int(step or 0), None) for value, step in pairs]
    example = "[v0, v1, …]" if mode == "list" else "[{'step': s, 'value': v}, …]"
    if isinstance(data, (Mapping, str)) or not isinstance(data, (Sequence, *_array_types())):
        raise DatasetError(f"{label} (mode {mode}) saves {example}, got {type(data).__name__}.")
    items: list[Any] = list(cast("Iterable[Any]", data))
    if mode == "list":
        return [(_value_and_step(label, value)[0], step, None) for step, value in enumerate(items)]
    entries = []
    for entry in items:
        if not isinstance(entry, Mapping):
            raise DatasetError(f"{label} (mode history) saves {example}, got an item {entry!r}.")
        value, step = _value_and_step(label, entry, step_required=True)
        stamp = entry.get("timestamp")
        entries.append((value, int(step or 0), None if stamp is None else int(stamp)))
    return entries


def _array_types() -> tuple[type, ...]:
    """numpy arrays (and pandas Series) count as lists of values, when those libraries are loaded."""
    import sys

    types: list[type] = []
    if "numpy" in sys.modules:
        types.append(sys.modules["numpy"].ndarray)
    if "pandas" in sys.modules:
        types.append(sys.modules["pandas"].Series)
    return tuple(types)


def _log_metrics(client: MlflowClient, run_id: str, rows: list[tuple[str, float, int, int | None]]) -> None:
    """Log ``(key, value, step, timestamp)`` rows in as few ``log_batch`` calls as MLflow allows (1000 per call)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key=key, value=value, timestamp=now if stamp is None else stamp, step=step)
        for key, value, step, stamp in rows
    ]
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
