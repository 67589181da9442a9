"""Kedro hooks for one training run, registered on its session only (``kedro run`` of the project is unaffected).

They log one plain line per node start and finish, keep the run's catalog (its save version pins the artifacts),
note what the run saved, log the Kedro params, keep a bounded sample of the training input for the model signature
— never the whole input, which could then not be freed while the pipeline runs — and make the training run the
active MLflow run of every thread a node runs in, so ``mlflow.log_metric`` in a node lands on it under
``ThreadRunner`` too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pluggy

from airflow_kedro_mlflow.tracking.params import ParamsOptions, log_params
from airflow_kedro_mlflow.tracking.runs import ThreadSharedRun

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from mlflow.entities import Run

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: Kedro's hook marker, built from pluggy directly so this module does not import kedro before
#: ``prepare_kedro_environment`` has chosen the logging config (same project name as ``kedro.framework.hooks``).
hook_impl = pluggy.HookimplMarker("kedro")

#: Rows of the training input kept for the model signature.
SAMPLE_ROWS = 100


def bounded_sample(data: Any, rows: int = SAMPLE_ROWS) -> Any:
    """A copy of the first ``rows`` rows of ``data`` from which MLflow infers the same signature as from all of it.

    The copy matters: a slice (a view) or the object itself would keep the whole input alive after Kedro released it.
    MLflow types a pandas column by its dtype, which the slice keeps, but marks it optional when *any* of its values
    is missing: a column whose first missing value lies beyond the sample gets that value written into the sample's
    last row, so the sample (used for schema inference only) stays ``rows`` long and its inferred schema is the
    whole input's. (Object columns are typed from their sampled values, as MLflow types any sample.) A numpy array
    is typed by its dtype and its shape beyond the first axis, both kept. Objects that cannot be cut (a lazy Spark
    DataFrame, a small dict) are kept as they are.
    """
    if hasattr(data, "iloc") and hasattr(data, "copy"):  # pandas DataFrame / Series
        sample = data.iloc[:rows].copy()
        if 0 < len(sample) < len(data):
            _carry_missing_values(data, sample)
        return sample
    if hasattr(data, "shape") and hasattr(data, "copy") and getattr(data, "ndim", 0) >= 1:  # numpy array
        return data[:rows].copy()
    return data


def _carry_missing_values(data: Any, sample: Any) -> None:
    """Write into ``sample``'s last row a missing value of each column that has one in ``data`` but not in it.

    Column by column, so the check allocates one column's mask at a time, never a mask of the whole input.
    """
    import numpy as np

    one_column = getattr(data, "ndim", 1) == 1
    for position in range(1 if one_column else data.shape[1]):
        column = data if one_column else data.iloc[:, position]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":  # numpy ints/bools hold no NA
            continue
        sampled = sample if one_column else sample.iloc[:, position]
        if sampled.hasnans:
            continue
        missing = column.isna().to_numpy()
        if not missing.any():
            continue
        value = column.iloc[int(missing.argmax())]
        if one_column:
            sample.iloc[-1] = value
        else:
            sample.iloc[-1, position] = value


class RunObserver:
    """Kedro hooks for one training run: node log lines, the run's catalog, what was saved, the input data.

    Registered on the session only (not in the project's settings), so ``kedro run`` is unaffected.

    :param run: the training run, active in the thread that created the observer; nodes that a runner runs in
        other threads get it as their active MLflow run too (see :class:`~.tracking.runs.ThreadSharedRun`).
    """

    def __init__(
        self, tracking: TrackingConfig, run: Run, input_name: str | None, params_options: ParamsOptions | None = None
    ) -> None:
        self.tracking = tracking
        self.run = run
        self.run_id = run.info.run_id
        self.input_name = input_name
        self.params_options = params_options
        self.catalog: CatalogProtocol | None = None
        self.saved: set[str] = set()
        self.input_data: Any = None  # a bounded sample, see bounded_sample()
        self.failed_node: str | None = None
        self.node_error: BaseException | None = None
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._threads = ThreadSharedRun(run)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Keep the run's catalog (its save version pins the artifacts) and log the Kedro params to MLflow."""
        self.catalog = catalog
        parameters = catalog.load("parameters") if "parameters" in catalog else {}
        log_params(self.tracking.client(), self.run_id, parameters, options=self.params_options,
                   inputs=pipeline.inputs())  # fmt: skip

    @hook_impl(tryfirst=True)
    def before_node_run(self, node: Node) -> None:
        """Log one line as a node starts; make the training run active in the node's thread if it is not.

        First of all hooks, so other hooks of the node see the run too. No server call, and the run is not ended
        afterwards: it is only taken off this thread's run stack again when the node is done.
        """
        with self._lock:
            self._started[node.name] = time.perf_counter()
        self._threads.enter()
        logger.info("Node %s started", node.name)

    @hook_impl(trylast=True)
    def after_node_run(self, node: Node) -> None:
        """Log one line, with the duration, as a node finishes."""
        self._threads.leave()
        logger.info("Node %s finished in %.2fs", node.name, self._elapsed(node.name))

    @hook_impl(trylast=True)
    def on_node_error(self, error: Exception, node: Node) -> None:
        """Remember the first failing node and its original error, for :class:`KedroRunError`."""
        self._threads.leave()
        logger.error(
            "Node %s failed after %.2fs: %s: %s", node.name, self._elapsed(node.name), type(error).__name__, error
        )
        with self._lock:
            if self.failed_node is None:
                self.failed_node, self.node_error = node.name, error

    @hook_impl(tryfirst=True)
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        """Make the training run active in the saving thread: a tracking dataset logs into it as it saves."""
        self._threads.enter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        """Note datasets this run wrote (their versions get pinned) and keep the training input data."""
        self._threads.leave()
        with self._lock:
            self.saved.add(dataset_name)
        self._keep_input(dataset_name, data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Node) -> None:
        """Keep the training input data (``input_name``) for the model signature."""
        self._keep_input(dataset_name, data)

    def _keep_input(self, dataset_name: str, data: Any) -> None:
        if dataset_name != self.input_name or self.input_data is not None:
            return
        sample = bounded_sample(data)
        with self._lock:
            if self.input_data is None:
                self.input_data = sample

    def _elapsed(self, name: str) -> float:
        with self._lock:
            started = self._started.pop(name, None)
        return 0.0 if started is None else time.perf_counter() - started
