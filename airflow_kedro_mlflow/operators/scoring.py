"""Operator that scores a table with a registered MLflow model: :class:`MlflowBatchPredictOperator`.

Thin: it resolves the ``mlflow`` connection and the templated arguments, pins an alias to the version of the asset
event that triggered the DAG run, and calls :func:`airflow_kedro_mlflow.scoring.score_batch`, which Python and
``airflow-kedro-mlflow score`` users call too (chunking, engines, the output policy and its metadata are documented
there). kedro, mlflow and pandas are imported inside ``execute`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_kedro_mlflow.exceptions import ScoringInputError
from airflow_kedro_mlflow.hooks.mlflow import MlflowHook
from airflow_kedro_mlflow.links.mlflow import MLFLOW_MODEL_VERSION_URL_KEY, MlflowModelVersionLink
from airflow_kedro_mlflow.openlineage import OpenLineageMixin, scoring_lineage
from airflow_kedro_mlflow.operators.interruptible import InterruptibleMixin
from airflow_kedro_mlflow.operators.kedro import lineage_tags

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_kedro_mlflow.scoring import DatasetLocation, PathLocation

logger = logging.getLogger(__name__)

#: Rows per chunk when none is given (the core's default, repeated so the DAG file imports nothing heavy).
DEFAULT_CHUNK_SIZE = 100_000


class MlflowBatchPredictOperator(InterruptibleMixin, OpenLineageMixin, BaseOperator):
    """Score a table with an MLflow model and write the input columns plus the predictions, once per DAG run.

    ``model_uri`` is resolved once to a concrete version (``models:/<name>/<version>``), which is loaded, recorded in
    the output's metadata and returned. When the DAG run was triggered by asset events about
    ``models:/<name>@<alias>`` (a promotion), the version of the last such event is used, even if the alias has moved
    again since. The input and the output are each an fsspec path with a format, or a dataset of a Kedro project's
    catalog. The pandas engine reads the input chunk by chunk (memory bounded by ``chunk_size`` rows); the spark
    engine runs the model in Spark through ``mlflow.pyfunc.spark_udf``.

    The output is written to a temporary sibling and moved into place. A retry of this task overwrites the output it
    wrote; an output written by another DAG run or task is refused unless ``overwrite=True``.

    :param model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/<model_id>`` or
        ``runs:/<run_id>/<path>``. (templated)
    :param input_path: fsspec path or URL of the table to score. (templated)
    :param input_format: ``parquet``, ``csv`` or ``jsonl``; from the suffix when None. (templated)
    :param input_dataset: catalog dataset to score instead of ``input_path``. (templated)
    :param output_path: fsspec path or URL of the scored table; template it per DAG run. (templated)
    :param output_format: ``parquet``, ``csv`` or ``jsonl``; from the suffix when None. (templated)
    :param output_dataset: catalog dataset (unversioned pandas parquet or CSV) instead of ``output_path``. (templated)
    :param project_path: Kedro project whose catalog holds the datasets. (templated)
    :param env: Kedro configuration environment of that catalog. (templated)
    :param conf_source: Kedro configuration folder or archive instead of ``conf/``. (templated)
    :param runtime_params: runtime params the catalog reads, e.g. ``{"data_dir": ...}``. (templated)
    :param engine: ``pandas`` (default) or ``spark``. (templated)
    :param chunk_size: rows per chunk of the pandas engine. (templated)
    :param predict_params: model params for ``predict``, e.g. ``{"threshold": 0.7}``. (templated)
    :param overwrite: replace an existing output whoever wrote it.
    :param spark_master: Spark master URL of the spark engine. (templated)
    :param spark_result_type: Spark type of the model's output, when its signature has no output schema. (templated)
    :param env_manager: ``spark_udf``'s environment manager (``local``, ``virtualenv``, ``uv``).
    :param storage_options: fsspec options of the input and output paths (not templated: may hold secrets).
    :param mlflow_conn_id: Airflow connection of type ``mlflow``.
    """

    template_fields: Sequence[str] = (
        "model_uri",
        "input_path",
        "input_format",
        "input_dataset",
        "output_path",
        "output_format",
        "output_dataset",
        "project_path",
        "env",
        "conf_source",
        "runtime_params",
        "engine",
        "chunk_size",
        "predict_params",
        "spark_master",
        "spark_result_type",
    )
    template_fields_renderers = {"runtime_params": "json", "predict_params": "json"}
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#43c9ed"
    killed_while = "scoring; no output was published."  # its temporary output is removed on the way out

    def __init__(
        self,
        *,
        model_uri: str,
        input_path: str | None = None,
        input_format: str | None = None,
        input_dataset: str | None = None,
        output_path: str | None = None,
        output_format: str | None = None,
        output_dataset: str | None = None,
        project_path: str | None = None,
        env: str | None = None,
        conf_source: str | None = None,
        runtime_params: dict[str, Any] | None = None,
        engine: str = "pandas",
        chunk_size: int | str = DEFAULT_CHUNK_SIZE,
        predict_params: dict[str, Any] | None = None,
        overwrite: bool = False,
        spark_master: str = "local[2]",
        spark_result_type: str | None = None,
        env_manager: str = "local",
        storage_options: dict[str, Any] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for side, path, dataset in (("input", input_path, input_dataset), ("output", output_path, output_dataset)):
            if (path is None) == (dataset is None):
                raise ScoringInputError(
                    f"MlflowBatchPredictOperator {self.task_id!r} needs exactly one {side}: {side}_path (with "
                    f"{side}_format) or {side}_dataset (with project_path)."
                )
        if (input_dataset is not None or output_dataset is not None) and project_path is None:
            raise ScoringInputError(
                f"MlflowBatchPredictOperator {self.task_id!r} reads a catalog dataset: pass project_path (the Kedro "
                "project whose catalog defines it)."
            )
        self.model_uri = model_uri
        self.input_path, self.input_format, self.input_dataset = input_path, input_format, input_dataset
        self.output_path, self.output_format, self.output_dataset = output_path, output_format, output_dataset
        self.project_path, self.env, self.conf_source = project_path, env, conf_source
        self.runtime_params = runtime_params or {}
        self.engine = engine
        self.chunk_size = chunk_size
        self.predict_params = predict_params or {}
        self.overwrite = overwrite
        self.spark_master = spark_master
        self.spark_result_type = spark_result_type
        self.env_manager = env_manager
        self.storage_options = storage_options or {}
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Resolve the model (pinned to the triggering asset event), score, and return what was scored where."""
        from airflow_kedro_mlflow.scoring import pin_to_event, score_batch

        tracking = MlflowHook(self.mlflow_conn_id).get_tracking_config()
        model_uri = pin_to_event(self.model_uri, triggering_event_extras(context), tracking.public_uri)
        if model_uri != self.model_uri:
            logger.info("Scoring with %s: the version of the asset event that triggered this run", model_uri)
        with self._interruptible():
            result = score_batch(
                model_uri,
                self._location("input"),
                self._location("output"),
                tracking=tracking,
                engine=self.engine,
                chunk_size=_positive_int(self.chunk_size),
                params=self.predict_params or None,
                task_identity=lineage_tags(context),
                overwrite=self.overwrite,
                spark_master=self.spark_master,
                spark_result_type=self.spark_result_type or None,
                env_manager=self.env_manager,
            )
        if result.model_version_url:
            context["ti"].xcom_push(key=MLFLOW_MODEL_VERSION_URL_KEY, value=result.model_version_url)
        self._record_lineage(scoring_lineage, result, self.input_path)  # model version + input -> output
        return result.to_xcom()

    def _location(self, side: str) -> PathLocation | DatasetLocation:
        from airflow_kedro_mlflow.scoring import DatasetLocation, PathLocation

        dataset = getattr(self, f"{side}_dataset")
        if dataset is not None:
            return DatasetLocation(
                dataset,
                str(self.project_path),
                env=self.env or None,
                conf_source=self.conf_source or None,
                runtime_params=self.runtime_params or {},
            )
        path, format = getattr(self, f"{side}_path"), getattr(self, f"{side}_format")
        return PathLocation(str(path), format or None, storage_options=self.storage_options)


def triggering_event_extras(context: Context) -> list[Mapping[str, Any]]:
    """The ``extra`` of every asset event that triggered the DAG run, oldest first (empty for a manual run)."""
    events = context.get("triggering_asset_events") or {}
    consumed = [event for asset_events in events.values() for event in asset_events]
    consumed.sort(key=lambda event: event.timestamp)
    return [event.extra or {} for event in consumed]


def _positive_int(value: int | str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ScoringInputError(f"chunk_size must be a positive number of rows, got {value!r}.") from exc
