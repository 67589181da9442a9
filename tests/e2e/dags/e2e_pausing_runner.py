"""A Kedro runner that stops mid-training on a task's first try, so a test can kill the worker at a known point.

Kedro's ``runner`` is a public extension point (``KedroTrainingOperator(runner="module.Class")``), which keeps the
fault injection out of the package and the example project. On try 1 the runner pauses right after the fitted
``scaler`` was saved (the ``classifier`` not yet), writes ``<E2E_SIGNAL_DIR>/<dag run>.paused`` holding the task
process id, and waits to be killed. Every later try runs straight through.

``tests/e2e/conftest.py`` copies this file into the e2e copy of the project's package: the training operator loads
runners only from ``kedro.runner`` or the project. ``e2e_signals`` comes from the DAG folder, on the task's path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from e2e_signals import signal_file
from kedro.framework.hooks import hook_impl
from kedro.runner import SequentialRunner

#: Dataset after whose save the first try pauses: an artifact exists on disk, the model is not trained yet.
PAUSE_AFTER_DATASET = "scaler"
#: How long a paused try waits to be killed before failing on its own (a test that forgot to kill it).
PAUSE_LIMIT_SECONDS = 300


class _PauseAfterSave:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name != PAUSE_AFTER_DATASET:
            return
        self.marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.2)
        raise RuntimeError(f"paused try was not killed within {PAUSE_LIMIT_SECONDS}s (marker {self.marker})")


class PauseOnFirstTryRunner(SequentialRunner):
    """``SequentialRunner`` that pauses after saving ``scaler`` when ``AIRFLOW_CTX_TRY_NUMBER`` is 1."""

    def run(self, pipeline: Any, catalog: Any, hook_manager: Any = None, *args: Any, **kwargs: Any) -> Any:
        if os.environ.get("AIRFLOW_CTX_TRY_NUMBER") == "1":
            if hook_manager is None:
                raise RuntimeError("PauseOnFirstTryRunner needs Kedro's hook manager (run it through a session)")
            hook_manager.register(_PauseAfterSave(signal_file(os.environ["AIRFLOW_CTX_DAG_RUN_ID"], "paused")))
        return super().run(pipeline, catalog, hook_manager, *args, **kwargs)
