"""kedro-mlflow installed next to us: its hook is held off in the Kedro sessions airflow-kedro-mlflow opens.

kedro-mlflow registers ``MlflowHook`` for every Kedro session of its environment (an entry point). Left active in a
session ``run_training`` or ``modelify`` opens, its first ``after_context_created`` (before our run exists) applies
``mlflow.yml``: it points MLflow's global tracking URI at that file's server, creates the experiment there, and copies
the project's MLflow credentials into ``os.environ`` of the worker; then it starts a second run, or joins ours and
logs a second model into it after the pipeline. So in our sessions it is held off:
:func:`hold_off_kedro_mlflow` swaps it for a stand-in that keeps the one thing its tracking datasets need from it —
``after_catalog_created``, which names a ``MlflowMetricDataset`` / ``MlflowMetricHistoryDataset`` without ``key`` (and
a ``MlflowMetricsHistoryDataset`` without ``prefix``) after its catalog entry. The datasets then log into the active
run, ours (shared with the node's thread by the training observer), on our connection's server.

What the project loses under our operators, and gets from us instead: run start/end (ours), node params (ours, in
kedro-mlflow's shape with ``params: {shape: kedro_mlflow}``), the model after a ``PipelineML`` run (the modelify task),
``mlflow.yml``'s server and credentials (the Airflow connection's). ``kedro run`` in the project is untouched: only the
sessions opened here are changed, never the project's settings.
"""

from __future__ import annotations

import logging
from typing import Any

import pluggy

logger = logging.getLogger(__name__)

#: Kedro's hook marker, built from pluggy (same project name as ``kedro.framework.hooks``), so importing this module
#: does not import kedro.
hook_impl = pluggy.HookimplMarker("kedro")


def is_kedro_mlflow_hook(plugin: object) -> bool:
    """Whether ``plugin`` is kedro-mlflow's ``MlflowHook`` (by class, without importing kedro-mlflow)."""
    cls = type(plugin)
    return cls.__name__ == "MlflowHook" and cls.__module__.startswith("kedro_mlflow.")


class HeldKedroMlflowHook:
    """Stands in for kedro-mlflow's ``MlflowHook`` in a session we run: forwards ``after_catalog_created`` only."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        """Let kedro-mlflow key its metric datasets by their catalog names (it reads nothing but the catalog)."""
        self.hook.after_catalog_created(
            catalog=catalog, conf_catalog={}, conf_creds={}, parameters={}, save_version=None, load_versions={}
        )


def hold_off_kedro_mlflow(hook_manager: pluggy.PluginManager) -> bool:
    """Replace kedro-mlflow's hook in ``hook_manager`` (one session's) by :class:`HeldKedroMlflowHook`.

    Call it right after ``KedroSession.create``, before the first ``load_context``. Returns whether it was there.
    """
    held = False
    for plugin in list(hook_manager.get_plugins()):
        if is_kedro_mlflow_hook(plugin):
            hook_manager.unregister(plugin)
            hook_manager.register(HeldKedroMlflowHook(plugin))
            held = True
    if held:
        logger.info(
            "kedro-mlflow's hook is held off in this session: the run, its params and the model are "
            "airflow-kedro-mlflow's, on the connection's MLflow server (mlflow.yml is not applied); kedro-mlflow's "
            "tracking datasets log into that run."
        )
    return held
