"""``KedroPipelineModel``: a Kedro inference pipeline as an MLflow pyfunc model, with a fast predict path.

``load_context`` does all the work once: check each artifact's sha256 against the one recorded at training, load
the artifacts into memory through their catalog definitions, order the nodes and bind their inputs. ``predict`` then
only feeds ``model_input`` (and ``params``) through the node functions: no runner, hook manager or catalog per call,
no catalog deep copy, no INFO log per call. The results are those of Kedro's ``SequentialRunner`` on the same
inputs, including the ``copy_mode`` of each dataset. A ``runner`` passed explicitly is used as given instead, with a
fresh in-memory catalog per call.

As in kedro-mlflow, a predict call can choose the runner: ``predict(df, params={"runner": "ThreadRunner"})``. The
signature declares a ``runner`` param whose default is the model's own runner (``SequentialRunner`` when none was
given), so a call without it keeps the path above. Only in-process runners are accepted: the name comes from whoever
sends the request, so it is looked up in a fixed list, never imported.

Bad predict-time input (empty data, a ``None``/NaN param, data a node function rejects) raises
``KedroPipelineModelInputError``: a ``KedroPipelineModelError`` for Python callers, and an ``MlflowException`` that
MLflow's scoring server answers with a 400 carrying only the message, never the server's traceback and paths.

The object is pickled by MLflow (cloudpickle) when the model is logged: it holds only the inference pipeline, the
catalog definitions of its artifacts (without credentials), their paths and hashes, never the loaded data.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from kedro.pipeline import Pipeline
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from airflow_kedro_mlflow.exceptions import KedroPipelineModelError
from airflow_kedro_mlflow.model.artifacts import (
    artifact_dataset_config,
    catalog_dataset,
    check_artifact_names,
    load_artifact,
    load_parameter,
    local_artifact_path,
    missing_hashes,
    save_parameter,
    sha256_path,
    verify_sha256,
)
from airflow_kedro_mlflow.pipeline.pipeline_ml import (
    PARAMS_PREFIX,
    artifact_inputs,
    format_names,
    is_parameter,
    is_pipeline_ml,
    suggest,
    validate_inference,
)

if TYPE_CHECKING:
    from kedro.io import AbstractDataset, CatalogProtocol
    from kedro.pipeline.node import Node
    from kedro.runner import AbstractRunner

    from airflow_kedro_mlflow.pipeline.pipeline_ml import PipelineMLLike

logger = logging.getLogger(__name__)

COPY_MODES = ("assign", "copy", "deepcopy")
CopyMode = Literal["assign", "copy", "deepcopy"] | None
#: How a node declares its inputs or outputs: one name, names in order, ``{argument or key: name}``, or none.
_NodeBinding = str | list[str] | dict[str, str] | None


#: Types ``copy.deepcopy`` returns as they are: skipping it for them changes nothing but the time per call.
_ATOMIC = frozenset({int, float, bool, str, bytes, complex, type(None)})

#: The predict-time ``runner`` param (kedro-mlflow's name) and the runners it may name. ``SequentialRunner`` is the
#: fast path, which gives its results; ParallelRunner would start worker processes on every call.
RUNNER_PARAM = "runner"
DEFAULT_RUNNER = "SequentialRunner"
PREDICT_RUNNERS = ("SequentialRunner", "ThreadRunner")

#: What a node function raises when the data or params it got are wrong (sklearn's "Input X contains NaN", pandas'
#: missing column, a division by a zero param). Anything else (OSError, RuntimeError, ...) is a fault of the model or
#: of the machine, not of the request, and propagates unchanged.
_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError)

#: An absolute POSIX path of two or more parts (not a URL, not ``a/b``): hidden from messages sent to clients.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/]+/)+[^\s'\",;)]*")
_CAUSE_MAX_CHARS = 300


# The one error class outside exceptions.py: it must subclass MlflowException (so MLflow's scoring server answers a
# clean 400), and exceptions.py is imported by the Airflow layer at DAG-parse time, where mlflow must not be.
class KedroPipelineModelInputError(KedroPipelineModelError, MlflowException):
    """A predict call's input (data or params) cannot go through the inference pipeline.

    Also an ``MlflowException`` with ``INVALID_PARAMETER_VALUE``: MLflow's scoring server answers it with a 400 whose
    body is the message alone, where any other exception gets a body with the server's traceback and file paths.
    """

    def __init__(self, message: str) -> None:
        # Not super(): ValueError.__init__ (next in the MRO) takes no error_code.
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


def _copy_value(value: Any, mode: CopyMode) -> Any:
    """Copy ``value`` as a Kedro ``MemoryDataset`` with ``copy_mode=mode`` does on save and on load."""
    if mode == "assign" or (mode != "copy" and type(value) in _ATOMIC):
        return value
    if mode is None:
        mode = _default_copy_mode(value)
        if mode == "assign":
            return value
    if mode == "copy":
        return value.copy()
    return copy.deepcopy(value)


def _default_copy_mode(value: Any) -> CopyMode:
    """Kedro's choice of copy mode for a ``MemoryDataset`` without one (``kedro.io.memory_dataset``), by type.

    pandas DataFrames and numpy arrays are copied, other DataFrames (Spark, polars) and ibis tables assigned,
    anything else deep-copied. Kedro's own helper imports pandas, numpy and ibis on every call (~0.2 ms); a value
    can only be of a type whose module is already imported, so looking in ``sys.modules`` gives the same answer.
    """
    pandas, numpy, ibis = (sys.modules.get(name) for name in ("pandas", "numpy", "ibis"))
    if (pandas and isinstance(value, pandas.DataFrame)) or (numpy and isinstance(value, numpy.ndarray)):
        return "copy"
    if type(value).__name__ == "DataFrame" or (ibis and isinstance(value, ibis.Table)):
        return "assign"
    return "deepcopy"


@dataclass(frozen=True)
class _Plan:
    """What ``load_context`` prepares once: the loaded artifacts/params and one bound callable per node."""

    initial: dict[str, Any]
    steps: tuple[Callable[[dict[str, Any]], None], ...]
    node_names: tuple[str, ...]  # of the node each step runs, to name it when it fails


class KedroPipelineModel(PythonModel):
    """Serve a Kedro inference pipeline, with everything its training produced, as an MLflow pyfunc model.

    Log it with ``mlflow.pyfunc.log_model(python_model=model, artifacts=model.extract_pipeline_artifacts(), ...)``.
    """

    # MLflow wraps the ``predict`` of every PythonModel subclass for type-hint based input conversion, and warns at
    # class creation when ``model_input`` has no (list-shaped) hint. Our input is whatever the pipeline's first
    # nodes take (pandas, numpy, Spark) and the signature already validates requests, so we opt out the way
    # MLflow's own model classes do; it also keeps a wrapper call out of the per-request path.
    _skip_type_hint_validation = True

    def __init__(
        self,
        pipeline: PipelineMLLike | Pipeline,
        catalog: CatalogProtocol,
        input_name: str | None = None,
        runner: AbstractRunner | None = None,
        copy_mode: CopyMode | dict[str, CopyMode] = "assign",
    ) -> None:
        """Describe the model; nothing is loaded or copied yet.

        :param pipeline: a ``PipelineML`` (ours, or kedro-mlflow's: its ``inference`` and ``input_name`` are
            used) or the inference ``Pipeline`` itself, with ``input_name``.
        :param catalog: the Kedro catalog of the training run; it tells where each artifact lives and how to
            load it. It is not pickled with the model.
        :param input_name: the inference input receiving the data to predict on; defaults to the PipelineML's.
        :param runner: a Kedro runner to use at predict time instead of the fast path (e.g. ``ThreadRunner()``).
        :param copy_mode: how each dataset is copied when a node reads or writes it, as ``MemoryDataset`` does:
            ``"assign"`` (no copy, the default), ``"copy"`` or ``"deepcopy"`` for every dataset but the
            ``params:`` ones (which keep Kedro's default, as in a Kedro run), or a ``{dataset: mode}`` dict
            (datasets left out get Kedro's default: copy for pandas/numpy, deepcopy for most other objects).
        :raises PipelineMLError: when the inference pipeline breaks a rule (input_name, single output).
        :raises KedroPipelineModelError: for an invalid ``copy_mode`` or an artifact the catalog cannot provide.
        """
        if is_pipeline_ml(pipeline):
            inference = pipeline.inference
            input_name = input_name or pipeline.input_name
        elif not isinstance(pipeline, Pipeline):
            raise KedroPipelineModelError(
                f"pipeline must be a PipelineML or the inference kedro Pipeline, got {type(pipeline).__name__}."
            )
        else:
            inference = pipeline
            if input_name is None:
                raise KedroPipelineModelError(
                    "input_name is required when pipeline is a plain inference Pipeline: pass the inference input "
                    f"that receives the data to predict on, one of {format_names(pipeline.inputs())}."
                )
        validate_inference(inference, input_name)
        _validate_runner(runner)
        self.inference: Pipeline = inference
        self.input_name: str = input_name
        (self.output_name,) = inference.outputs()
        self.runner = runner
        self.copy_mode = copy_mode
        self._copy_modes = _resolve_copy_modes(copy_mode, inference)
        self.artifact_names: list[str] = artifact_inputs(inference, input_name)
        self.param_names: dict[str, str] = {
            name.removeprefix(PARAMS_PREFIX): name for name in self.artifact_names if name.startswith(PARAMS_PREFIX)
        }
        self._dataset_configs: dict[str, dict[str, Any]] = {
            name: artifact_dataset_config(name, catalog) for name in self.artifact_names if not is_parameter(name)
        }
        for name in self.artifact_names:
            if is_parameter(name):
                catalog_dataset(name, catalog)
        self.artifact_paths: dict[str, str] = {}
        self.artifact_sha256: dict[str, str] = {}
        self._catalog: CatalogProtocol | None = catalog
        self._plan: _Plan | None = None
        self._fallback_runner: AbstractRunner | None = None
        self._predict_runners: dict[str, AbstractRunner] = {}

    @property
    def runner_name(self) -> str:
        """The name a predict call's ``runner`` param gives to get this model's own runner (the signature default)."""
        return DEFAULT_RUNNER if self.runner is None else type(self.runner).__name__

    @property
    def pipeline(self) -> Pipeline:
        """The inference pipeline (kedro-mlflow's name for it)."""
        return self.inference

    # -- building: before the model is logged -------------------------------------------------------------------

    def extract_pipeline_artifacts(self, parameters_saving_folder: str | Path | None = None) -> dict[str, str]:
        """Return ``{catalog dataset name: absolute local path}`` of every artifact, for ``log_model(artifacts=)``.

        Versioned datasets give their exact version file; remote (fsspec) files are copied under the folder;
        ``params:`` values are written there as JSON (or pickle when JSON would change their type). Paths given
        to :meth:`set_artifacts` are returned as they are. The sha256 of each path is recorded in
        ``artifact_sha256``, and ``load_context`` refuses files that no longer match.

        :param parameters_saving_folder: where parameter files and remote copies go; a new temporary folder if
            ``None`` (the caller may delete it once the model is logged).
        :raises ArtifactNotFoundError: naming the dataset and path when an artifact is not persisted yet.
        """
        todo = [name for name in self.artifact_names if name not in self.artifact_paths]
        catalog = self._catalog
        if todo and catalog is None:
            raise KedroPipelineModelError(
                f"Artifacts {format_names(todo)} have no path and this model has no catalog (it was unpickled). "
                f"Pass their paths and hashes with set_artifacts(), or build the model from a catalog."
            )
        folder = Path(parameters_saving_folder or tempfile.mkdtemp(prefix="kedro-pipeline-model-"))
        if catalog is not None:  # else nothing is left to extract (checked above)
            for name in todo:
                if is_parameter(name):
                    path = save_parameter(name, catalog.load(name), folder)
                else:
                    path = local_artifact_path(name, catalog, folder)
                self.artifact_paths[name] = str(path)
                self.artifact_sha256[name] = sha256_path(path)
        return {name: self.artifact_paths[name] for name in self.artifact_names}

    def set_artifacts(self, paths: Mapping[str, str | Path], sha256: Mapping[str, str]) -> None:
        """Use artifact files fetched elsewhere (e.g. downloaded from the training run) instead of catalog paths.

        The files are checked now against ``sha256`` (the hashes recorded at training), so a mixed-up or modified
        artifact is refused before anything is logged. Artifacts left out are still extracted from the catalog
        by :meth:`extract_pipeline_artifacts`.

        :raises KedroPipelineModelError: for names that are not artifacts, or a path without a recorded hash.
        :raises ArtifactIntegrityError: when a file does not hash to its recorded sha256.
        """
        check_artifact_names(paths, self.artifact_names, "set_artifacts(paths=...)")
        no_hash = missing_hashes(paths, sha256)
        if no_hash:
            raise KedroPipelineModelError(
                f"set_artifacts got no sha256 for {format_names(no_hash)}. Pass the hashes recorded when training "
                f"wrote these files (TrainingResult.artifacts[name].sha256)."
            )
        for name, path in paths.items():
            verify_sha256(name, path, sha256[name], "training")
        for name, path in paths.items():
            self.artifact_paths[name] = str(Path(path).resolve())
            self.artifact_sha256[name] = sha256[name]

    # -- loading: once per process ---------------------------------------------------------------------------------

    def load_context(self, context: PythonModelContext) -> None:
        """Verify, load and bind everything ``predict`` needs, once.

        :raises KedroPipelineModelError: when the model was logged without an artifact, or without its hash.
        :raises ArtifactIntegrityError: naming the artifact whose file changed since training.
        """
        artifacts = dict(context.artifacts or {})
        missing = sorted(set(self.artifact_names) - set(artifacts))
        if missing:
            raise KedroPipelineModelError(
                f"The model was logged without artifact(s) {format_names(missing)}. Log it with "
                f"artifacts=model.extract_pipeline_artifacts()."
            )
        no_hash = missing_hashes({name: artifacts[name] for name in self.artifact_names}, self.artifact_sha256)
        if no_hash:
            raise KedroPipelineModelError(
                f"No sha256 was recorded for artifact(s) {format_names(no_hash)}, so they cannot be trusted. Build "
                f"the artifacts dict with model.extract_pipeline_artifacts() (or set_artifacts()) before logging."
            )
        initial: dict[str, Any] = {}
        for name in self.artifact_names:
            path = artifacts[name]
            verify_sha256(name, path, self.artifact_sha256[name], "the model (at training time)", in_logged_model=True)
            if is_parameter(name):
                initial[name] = load_parameter(path)
            else:
                initial[name] = load_artifact(name, self._dataset_configs[name], path)
        self._plan = _Plan(
            initial=initial, steps=self._bind_steps(), node_names=tuple(node.name for node in self.inference.nodes)
        )
        if self.runner is None and any(inspect.isgeneratorfunction(node.func) for node in self.inference.nodes):
            from kedro.runner import SequentialRunner

            logger.debug("Inference nodes yield chunks: predicting through SequentialRunner.")
            self._fallback_runner = SequentialRunner()
        else:
            self._fallback_runner = None

    def _bind_steps(self) -> tuple[Callable[[dict[str, Any]], None], ...]:
        nodes = self.inference.nodes
        last_use: dict[str, int] = {}
        for index, node in enumerate(nodes):
            for name in node.inputs:
                last_use[name] = index
        releases: list[list[str]] = [[] for _ in nodes]
        for name, index in last_use.items():
            if name != self.output_name:
                releases[index].append(name)
        return tuple(
            _bind_node(node, self._copy_modes, tuple(release)) for node, release in zip(nodes, releases, strict=True)
        )

    # -- predicting: many times ------------------------------------------------------------------------------------

    # MLflow reads the hints of ``predict`` when the model is logged (a hint on ``model_input`` would change how it
    # infers or warns about the signature), so ``model_input`` stays without one and mypy is told so here.
    def predict(  # type: ignore[no-untyped-def]
        self,
        context: PythonModelContext | None,
        model_input,  # no type hint on purpose: see _skip_type_hint_validation
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Run the inference pipeline on ``model_input`` and return its output.

        :param model_input: the data for ``input_name`` (pandas DataFrame, numpy array, Spark DataFrame, ...).
        :param params: ``params:`` overrides by name without the prefix (``{"threshold": 0.7}``); the others keep
            their training-time values. ``"runner"`` (unless the pipeline has a ``params:runner`` of its own) picks
            the Kedro runner by name: ``"SequentialRunner"`` or ``"ThreadRunner"``.
        :raises KedroPipelineModelError: when the model is not loaded.
        :raises KedroPipelineModelInputError: for a parameter the pipeline does not use, an unknown runner name, a
            ``None``/NaN parameter
            (unless its training value was one too), an empty ``model_input``, or a node function rejecting the
            data (``ValueError``, ``TypeError``, ...): the message names the node and the cause in one line.
        """
        plan = self._plan
        if plan is None:
            raise KedroPipelineModelError(
                "This KedroPipelineModel is not loaded: load it with mlflow.pyfunc.load_model(model_uri), or call "
                "load_context() first."
            )
        data = dict(plan.initial)
        runner = self.runner or self._fallback_runner
        if params:
            for key, value in params.items():
                name = self.param_names.get(key)
                if name is None:
                    if key == RUNNER_PARAM:
                        runner = self._requested_runner(value)
                        continue
                    raise KedroPipelineModelInputError(
                        f"Unknown parameter {key!r}: the inference pipeline uses "
                        f"{format_names(self.param_names) if self.param_names else 'no parameters'}."
                        f"{suggest(key, self.param_names)}"
                    )
                if _is_missing(value) and not _is_missing(plan.initial[name]):
                    raise _missing_param_error(key, value, plan.initial[name])
                data[name] = value
        if _is_empty(model_input):
            raise KedroPipelineModelInputError(
                f"model_input is empty (no rows for {self.input_name!r}): send at least one row to predict on."
            )
        if runner is not None:
            return self._predict_with_runner(runner, data, model_input)
        data[self.input_name] = _copy_value(model_input, self._copy_modes[self.input_name])
        try:
            for step in plan.steps:
                step(data)
        except KedroPipelineModelError:
            raise
        except _INPUT_ERRORS as exc:
            raise _node_input_error(plan.node_names[plan.steps.index(step)], exc) from exc
        return data[self.output_name]

    def _requested_runner(self, name: Any) -> AbstractRunner | None:
        """The runner a predict call's ``runner`` param names (None: the fast path); instances are kept per name."""
        if name == self.runner_name:
            return self.runner or self._fallback_runner
        if name == DEFAULT_RUNNER:
            return self._fallback_runner  # the fast path gives SequentialRunner's results; chunked nodes need it
        if name not in PREDICT_RUNNERS:
            accepted = " or ".join(repr(runner) for runner in dict.fromkeys((self.runner_name, *PREDICT_RUNNERS)))
            why = (
                " (it would start worker processes on every call)"
                if name == "ParallelRunner"
                else suggest(name, PREDICT_RUNNERS)
                if isinstance(name, str)
                else ""
            )
            raise KedroPipelineModelInputError(
                f"Unknown runner {name!r} in params{why}: predict runs the inference pipeline with {accepted}. "
                f"Leave 'runner' out to use {self.runner_name!r}."
            )
        runner = self._predict_runners.get(name)
        if runner is None:
            import kedro.runner

            runner = self._predict_runners.setdefault(name, getattr(kedro.runner, name)())
        return runner

    def _predict_with_runner(self, runner: AbstractRunner, data: dict[str, Any], model_input: Any) -> Any:
        """Run with the given runner on a fresh catalog of ``MemoryDataset`` honouring each dataset's copy_mode."""
        from kedro.io import DataCatalog, MemoryDataset

        data[self.input_name] = model_input
        datasets: dict[str, AbstractDataset] = {
            name: MemoryDataset(copy_mode=mode) for name, mode in self._copy_modes.items()
        }
        for name, value in data.items():
            datasets[name].save(value)
        catalog = DataCatalog(datasets=datasets)
        try:
            runner.run(self.inference, catalog)
        except KedroPipelineModelError:
            raise
        except _INPUT_ERRORS as exc:
            raise _node_input_error(_failed_node_name(exc), exc) from exc
        return catalog.load(self.output_name)

    # -- pickling: what MLflow stores --------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Leave out the catalog (not needed once artifacts are extracted) and anything loaded.

        The inference pipeline is pickled on its own, so that unpickling it where the project's code is missing
        fails with an error saying which package to ship instead of a bare ``ModuleNotFoundError``.
        """
        import cloudpickle

        state = self.__dict__.copy()
        state["_catalog"] = None
        state["_plan"] = None
        state.pop("_fallback_runner", None)
        state.pop("_predict_runners", None)
        state["inference"] = cloudpickle.dumps(self.inference)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import cloudpickle

        try:
            state["inference"] = cloudpickle.loads(state["inference"])
        except ModuleNotFoundError as exc:
            package = (exc.name or "?").split(".")[0]
            raise KedroPipelineModelError(
                f"The inference pipeline's node functions need module {exc.name!r}, which is not importable here. "
                f"Log the model with code_paths=project_code_paths({package!r}) (airflow_kedro_mlflow.model), or "
                f"install the Kedro project's package where the model is loaded."
            ) from exc
        self.__dict__.update(state)
        self._fallback_runner = None
        self._predict_runners = {}


def _is_missing(value: Any) -> bool:
    """``None`` or a float NaN (numpy's float64 included): what JSON ``null``/``NaN`` params arrive as."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _missing_param_error(key: str, value: Any, default: Any) -> KedroPipelineModelInputError:
    """Refuse a ``None``/NaN override of a param that had a real value at training (MLflow's schema lets both by)."""
    kind = type(default).__name__
    article = "an" if kind[:1] in "aeiou" else "a"
    return KedroPipelineModelInputError(
        f"Parameter {key!r} is {'None' if value is None else 'NaN'}: the inference pipeline expects {article} {kind} "
        f"(its training value is {default!r}). Send {article} {kind}, or leave {key!r} out to use {default!r}."
    )


def _is_empty(model_input: Any) -> bool:
    """Whether ``model_input`` has no rows, answered in O(1) for pandas, numpy, lists and dicts.

    Other inputs (Spark, dask, pandas-on-Spark) are never counted: their size may cost a full computation, and the
    node functions decide what to do with them.
    """
    pandas = sys.modules.get("pandas")  # a value can only be of a type whose module is already imported
    if pandas is not None and isinstance(model_input, (pandas.DataFrame, pandas.Series)):
        return len(model_input.index) == 0
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(model_input, numpy.ndarray):
        return model_input.ndim > 0 and model_input.shape[0] == 0
    if isinstance(model_input, (list, dict)):
        return not model_input
    return False


def _failed_node_name(exc: BaseException) -> str | None:
    """Name the node whose ``Node.run`` raised ``exc`` inside a Kedro runner, from the frames of its traceback.

    Kedro's runners re-raise a node's exception unchanged, without naming the node (they log it); the failing
    ``Node.run`` frame is the one place that still knows. Read on the error path only.
    """
    from kedro.pipeline.node import Node

    name = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, Node):
            name = owner.name
    return name


def _node_input_error(node_name: str | None, exc: BaseException) -> KedroPipelineModelInputError:
    """Turn a node function's exception about its input into one line for the client; the traceback stays here.

    The line is the exception's type and the first line of its message, shortened, with absolute paths replaced
    by ``<path>``: it reaches whoever sent the request, who must not learn the server's file layout.
    """
    where = f"Node {node_name!r}" if node_name else "A node of the inference pipeline"
    logger.debug("%s failed on the input of a predict call.", where, exc_info=exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = _ABSOLUTE_PATH.sub("<path>", lines[0]) if lines else ""
    if len(cause) > _CAUSE_MAX_CHARS:
        cause = cause[: _CAUSE_MAX_CHARS - 3] + "..."
    return KedroPipelineModelInputError(
        f"{where} failed on this input with {type(exc).__name__}{': ' if cause else ''}{cause} -- check the data "
        f"and params sent against the model's signature (the traceback is logged at DEBUG level where it runs)."
    )


def _validate_runner(runner: Any) -> None:
    """Accept any in-process Kedro runner; ParallelRunner would start processes and shared memory on every call."""
    from kedro.runner import AbstractRunner, ParallelRunner

    if runner is None:
        return
    if not isinstance(runner, AbstractRunner):
        raise KedroPipelineModelError(
            f"runner must be a Kedro runner instance such as kedro.runner.ThreadRunner(), got {runner!r}."
        )
    if isinstance(runner, ParallelRunner):
        raise KedroPipelineModelError(
            "runner=ParallelRunner() would start worker processes on every predict call. Leave runner unset for "
            "the fast in-process path, or pass ThreadRunner() for threads."
        )


def _resolve_copy_modes(copy_mode: Any, inference: Pipeline) -> dict[str, CopyMode]:
    """Map every dataset of ``inference`` to its copy mode, or raise naming what is invalid."""
    datasets = sorted(inference.datasets())
    valid = f"use one of {', '.join(repr(mode) for mode in COPY_MODES)}, or a {{dataset: mode}} dict"
    if copy_mode is None or isinstance(copy_mode, str):
        if copy_mode is not None and copy_mode not in COPY_MODES:
            raise KedroPipelineModelError(
                f"copy_mode={copy_mode!r} is not valid; {valid}.{suggest(copy_mode, COPY_MODES)}"
            )
        mode = cast(CopyMode, copy_mode)  # a str only if one of COPY_MODES (checked just above)
        return {name: None if is_parameter(name) else mode for name in datasets}
    if not isinstance(copy_mode, dict):
        raise KedroPipelineModelError(f"copy_mode={copy_mode!r} is not valid; {valid}.")
    unknown = set(copy_mode) - set(datasets)
    if unknown:
        hints = "".join(suggest(name, datasets) for name in sorted(unknown))
        raise KedroPipelineModelError(
            f"copy_mode names {format_names(unknown)}, which are not datasets of the inference "
            f"pipeline (its datasets are {format_names(datasets)}).{hints}"
        )
    invalid = {name: mode for name, mode in copy_mode.items() if mode is not None and mode not in COPY_MODES}
    if invalid:
        raise KedroPipelineModelError(f"copy_mode has invalid mode(s) {dict(sorted(invalid.items()))!r}; {valid}.")
    modes: dict[str, CopyMode] = dict.fromkeys(datasets)
    modes.update(copy_mode)
    return modes


def _node_binding(node: Node) -> tuple[_NodeBinding, _NodeBinding]:
    """Return how ``node`` binds its function: ``(inputs, outputs)`` as declared (str, list, dict or None).

    ``Node`` exposes its input/output *names* publicly but not the argument binding (which input goes to which
    keyword, which returned key to which dataset); ``Node.run`` has it but logs at INFO on every call, which the
    fast predict path must not do. Reading ``_inputs``/``_outputs`` here, once per node at load time, is the only
    way to call the function exactly as ``Node.run`` would.
    """
    return node._inputs, node._outputs


def _bind_node(node: Node, modes: Mapping[str, CopyMode], release: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    """Build a callable that runs ``node`` on the values in ``data`` and stores its outputs there.

    Reads copy each input per its copy mode and writes copy each output, as a ``MemoryDataset`` would; datasets
    no later node reads are dropped from ``data`` right after their last reader (the runner releases them too).
    The common shapes (one or two positional inputs, one output, no copies) get a closure without loops: this is
    the whole per-call cost of the model besides the node functions themselves.
    """
    call = _bind_call(node, modes)
    store = _bind_store(node, modes)
    if store is None:
        (out,) = _node_names(_node_binding(node)[1])
        if not release:

            def step(data: dict[str, Any]) -> None:
                data[out] = call(data)

            return step

        def step_and_release(data: dict[str, Any]) -> None:
            data[out] = call(data)
            for name in release:
                del data[name]

        return step_and_release

    def general_step(data: dict[str, Any]) -> None:
        store(data, call(data))
        for name in release:
            del data[name]

    return general_step


def _node_names(binding: _NodeBinding) -> tuple[str, ...]:
    """Dataset names of a node's declared inputs or outputs (str, list, dict values, or None), in order."""
    if binding is None:
        return ()
    if isinstance(binding, str):
        return (binding,)
    if isinstance(binding, dict):
        return tuple(binding.values())
    return tuple(binding)


def _bind_call(node: Node, modes: Mapping[str, CopyMode]) -> Callable[[dict[str, Any]], Any]:
    """Return ``data -> node.func(...)`` with the node's inputs taken from ``data`` (copied per their modes)."""
    func = node.func
    inputs = _node_binding(node)[0]
    names = _node_names(inputs)
    pairs = tuple((name, modes.get(name)) for name in names)
    copied = any(mode != "assign" for _, mode in pairs)
    if isinstance(inputs, dict):
        keywords = tuple(zip(inputs, pairs, strict=True))

        def call_keywords(data: dict[str, Any]) -> Any:
            return func(**{keyword: _copy_value(data[name], mode) for keyword, (name, mode) in keywords})

        return call_keywords
    if copied:

        def call_copies(data: dict[str, Any]) -> Any:
            return func(*[_copy_value(data[name], mode) for name, mode in pairs])

        return call_copies
    if len(names) == 1:
        (first,) = names

        def call_one(data: dict[str, Any]) -> Any:
            return func(data[first])

        return call_one
    if len(names) == 2:
        first, second = names

        def call_two(data: dict[str, Any]) -> Any:
            return func(data[first], data[second])

        return call_two

    def call_many(data: dict[str, Any]) -> Any:
        return func(*[data[name] for name in names])

    return call_many


def _bind_store(node: Node, modes: Mapping[str, CopyMode]) -> Callable[[dict[str, Any], Any], None] | None:
    """Return ``(data, result) -> None`` saving a node's result as ``Node.run`` maps it to datasets (copied per
    their modes), or ``None`` when the node has a single output stored as it is (the caller inlines that case)."""
    outputs = _node_binding(node)[1]
    names = _node_names(outputs)
    write_modes = tuple(modes.get(name) for name in names)
    if isinstance(outputs, str) and write_modes == ("assign",):
        return None
    keys = tuple(outputs) if isinstance(outputs, dict) else None
    label = str(node)

    def store(data: dict[str, Any], result: Any) -> None:
        if keys is not None:
            if not isinstance(result, dict) or set(result) != set(keys):
                raise KedroPipelineModelError(
                    f"Node {label} must return a dict with keys {sorted(keys)}, got "
                    f"{sorted(result) if isinstance(result, dict) else type(result).__name__}."
                )
            result = [result[key] for key in keys]
        elif isinstance(outputs, str):
            result = (result,)
        elif outputs is None:
            return
        elif not isinstance(result, list | tuple) or len(result) != len(names):
            raise KedroPipelineModelError(
                f"Node {label} must return {len(names)} values for outputs {list(names)}, got "
                f"{len(result) if isinstance(result, list | tuple) else type(result).__name__}."
            )
        for name, mode, value in zip(names, write_modes, result, strict=True):
            data[name] = _copy_value(value, mode)

    return store
