"""Kedro hooks for one training run, registered on its session only (``kedro run`` of the project is unaffected).

They log one plain line per node start and finish, keep the run's catalog (its save version pins the artifacts),
note what the run saved, log the Kedro params, and keep a bounded sample of the training input for the model
signature — never the whole input, which could then not be freed while the pipeline runs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pluggy

from airflow_kedro_mlflow.tracking.params import log_params

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: Kedro's hook marker, built from pluggy directly so this module does not import kedro before
#: ``prepare_kedro_environment`` has chosen the logging config (same project name as ``kedro.framework.hooks``).
hook_impl = pluggy.HookimplMarker("kedro")

#: Rows of the training input kept for the model signature (and its input example).
SAMPLE_ROWS = 100


def bounded_sample(data: Any, rows: int = SAMPLE_ROWS) -> Any:
    """The first ``rows`` rows of ``data`` as an independent copy (pandas, numpy, anything sliceable with ``head``).

    The copy matters: a view (or the object itself) would keep the whole input alive after Kedro released it.
    Objects that cannot be cut (a Spark DataFrame is lazy and cheap to keep; a dict is small) are kept as they are.
    """
    if hasattr(data, "iloc") and hasattr(data, "copy"):  # pandas DataFrame / Series
        return data.iloc[:rows].copy()
    if hasattr(data, "shape") and hasattr(data, "copy") and getattr(data, "ndim", 0) >= 1:  # numpy array
        return data[:rows].copy()
    return data


class RunObserver:
    """Kedro hooks for one training run: node log lines, the run's catalog, what was saved, the input data.

    Registered on the session only (not in the project's settings), so ``kedro run`` is unaffected.
    """

    def __init__(self, tracking: TrackingConfig, run_id: str, input_name: str | None) -> None:
        self.tracking = tracking
        self.run_id = run_id
        self.input_name = input_name
        self.catalog: CatalogProtocol | None = None
        self.saved: set[str] = set()
        self.input_data: Any = None  # a bounded sample, see bounded_sample()
        self.failed_node: str | None = None
        self.node_error: BaseException | None = None
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Keep the run's catalog (its save version pins the artifacts) and log the Kedro params to MLflow."""
        self.catalog = catalog
        parameters = catalog.load("parameters") if "parameters" in catalog else {}
        log_params(self.tracking.client(), self.run_id, parameters)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Log one line as a node starts."""
        with self._lock:
            self._started[node.name] = time.perf_counter()
        logger.info("Node %s started", node.name)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        """Log one line, with the duration, as a node finishes."""
        logger.info("Node %s finished in %.2fs", node.name, self._elapsed(node.name))

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        """Remember the first failing node and its original error, for :class:`KedroRunError`."""
        logger.error(
            "Node %s failed after %.2fs: %s: %s", node.name, self._elapsed(node.name), type(error).__name__, error
        )
        with self._lock:
            if self.failed_node is None:
                self.failed_node, self.node_error = node.name, error

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        """Note datasets this run wrote (their versions get pinned) and keep the training input data."""
        with self._lock:
            self.saved.add(dataset_name)
        self._keep_input(dataset_name, data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Node) -> None:
        """Keep the training input data (``input_name``) for the model signature."""
        self._keep_input(dataset_name, data)

    def _keep_input(self, dataset_name: str, data: Any) -> None:
        if dataset_name == self.input_name and self.input_data is None:
            self.input_data = bounded_sample(data)

    def _elapsed(self, name: str) -> float:
        with self._lock:
            started = self._started.pop(name, None)
        return 0.0 if started is None else time.perf_counter() - started
