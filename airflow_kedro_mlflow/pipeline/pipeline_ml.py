"""``PipelineML``: a Kedro training pipeline that knows the inference pipeline it feeds.

The training nodes are the pipeline itself (so ``kedro run`` runs training), and ``inference`` is the pipeline that
will be shipped as an MLflow model with everything training produced. The class only ever holds a *consistent*
pair: every operation that would change the training nodes either keeps every inference input available (and
returns a ``PipelineML``), returns a plain ``Pipeline`` with a warning that no model will be logged (``+``, ``|``,
``-`` and the single selection methods such as ``from_nodes``), or raises
:class:`~airflow_kedro_mlflow.exceptions.PipelineMLError` naming what goes missing (``filter(...)``, the entry point
of ``kedro run --tags/--from-nodes/...`` and of the operators' run controls, and ``&``).

The selection methods cannot raise: Kedro's runner itself calls ``from_nodes``/``only_nodes_with_outputs``/
``only_nodes`` on the running pipeline to suggest a ``--from-nodes`` resume point after a node failed, and an error
raised there would hide the node's own error.

Kedro 1.x's ``KedroSession.run`` computes ``Pipeline([]) + pipelines[name]`` and then ``.filter()`` with no
arguments, and the default ``register_pipelines`` sums every pipeline into ``__default__``: adding an empty
pipeline, adding ``0`` and ``filter()`` without arguments therefore return the ``PipelineML`` itself.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from typing import Any, Protocol, TypeGuard

from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from airflow_kedro_mlflow.exceptions import PipelineMLError

TRANSCODING_SEPARATOR = "@"
PARAMS_PREFIX = "params:"

NO_MODEL_WARNING = (
    "Combining PipelineML {training!r} with {operation!r} gives a plain Pipeline: its training nodes no longer "
    "match the inference pipeline, so no model will be logged when it runs. Run the PipelineML's own registered "
    "pipeline (kedro run --pipelines <name>) to log the model."
)


def is_parameter(name: str) -> bool:
    """Tell whether a dataset name is a Kedro parameter (``params:x`` or the whole ``parameters`` dict)."""
    return name.startswith(PARAMS_PREFIX) or name == "parameters"


def strip_transcoding(name: str) -> str:
    """Return a dataset name without its transcoding suffix (``model@pickle`` -> ``model``)."""
    return name.split(TRANSCODING_SEPARATOR, 1)[0]


def format_names(names: Iterable[str]) -> str:
    """Format dataset names as a sorted Python-like list, the way every error of the package shows them."""
    return repr(sorted(names))


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` when ``name`` looks like one of ``candidates``, else an empty string."""
    matches = difflib.get_close_matches(name, sorted(candidates), n=3)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(match) for match in matches) + "?"


def artifact_inputs(inference: Pipeline, input_name: str) -> list[str]:
    """List the inference inputs that must be shipped with the model (everything but ``input_name``), sorted."""
    return sorted(name for name in inference.inputs() if name != input_name)


def missing_inference_inputs(training: Pipeline, inference: Pipeline, input_name: str) -> list[str]:
    """Return the inference inputs that ``training`` neither reads nor produces (``params:`` inputs excepted).

    Such an input could not be shipped with the model: nothing in the training run makes or reads it, so the
    training and inference pipelines are out of sync.
    """
    available = {strip_transcoding(name) for name in training.all_inputs() | training.all_outputs()}
    return sorted(
        name
        for name in inference.inputs()
        if name != input_name and not is_parameter(name) and strip_transcoding(name) not in available
    )


def validate_inference(inference: Any, input_name: Any) -> None:
    """Check the inference side of the rules: ``input_name`` is one of its inputs, and it has exactly one output.

    :raises PipelineMLError: naming the datasets at fault.
    """
    if not isinstance(inference, Pipeline):
        raise PipelineMLError(
            f"inference must be a kedro.pipeline.Pipeline, got {type(inference).__name__}. Build it with "
            f"kedro.pipeline.Pipeline([...]) or pipeline([...])."
        )
    if not inference.nodes:
        raise PipelineMLError("The inference pipeline has no nodes. Pass the pipeline that makes the predictions.")
    inputs = inference.inputs()
    if not isinstance(input_name, str) or not input_name:
        raise PipelineMLError(
            f"input_name must be the name of the inference input that receives the data to predict on, got "
            f"{input_name!r}. The inference pipeline's inputs are {format_names(inputs)}."
        )
    if input_name not in inputs:
        raise PipelineMLError(
            f"input_name={input_name!r} is not an input of the inference pipeline; its inputs are "
            f"{format_names(inputs)}.{suggest(input_name, inputs)} Pass one of these, or make an inference node "
            f"read {input_name!r}."
        )
    if is_parameter(input_name):
        raise PipelineMLError(
            f"input_name={input_name!r} is a parameter; it must be the dataset holding the data to predict on. "
            f"Parameters are passed at predict time through `params`."
        )
    outputs = inference.outputs()
    if len(outputs) != 1:
        found = f"{len(outputs)}: {format_names(outputs)}" if outputs else "none"
        raise PipelineMLError(
            f"The inference pipeline must have exactly one output (the prediction), it has {found}. Make the "
            f"other datasets inputs of a downstream node, or remove the nodes that produce them."
        )


def validate_pipeline_ml(training: Any, inference: Any, input_name: Any) -> None:
    """Check the rules of a training/inference pair and raise ``PipelineMLError`` naming what is wrong.

    The rules (DESIGN.md "PipelineML rules"): ``input_name`` is an input of ``inference``; ``inference`` has exactly
    one output; every other inference input is an input or an output of ``training``, or a ``params:`` input.

    :raises PipelineMLError: on the first rule broken, naming the datasets at fault.
    """
    if not isinstance(training, Pipeline):
        raise PipelineMLError(
            f"training must be a kedro.pipeline.Pipeline, got {type(training).__name__}. Build it with "
            f"kedro.pipeline.Pipeline([...]) or pipeline([...])."
        )
    validate_inference(inference, input_name)
    missing = missing_inference_inputs(training, inference, input_name)
    if missing:
        known = {strip_transcoding(name) for name in training.all_inputs() | training.all_outputs()}
        hints = "".join(suggest(name, known) for name in missing)
        raise PipelineMLError(
            f"Inference input(s) {format_names(missing)} are neither inputs nor outputs of the training pipeline, "
            f"nor 'params:' inputs, so the model could not ship them.{hints} Make a training node produce or read "
            f"them, or pass one of them as input_name (currently {input_name!r})."
        )


class PipelineMLLike(Protocol):
    """What our ``PipelineML`` and kedro-mlflow's have in common, as :func:`is_pipeline_ml` recognizes them."""

    @property
    def training(self) -> Pipeline: ...

    @property
    def inference(self) -> Pipeline: ...

    @property
    def input_name(self) -> str: ...


class PipelineML(Pipeline):
    """A Kedro training ``Pipeline`` bound to the inference ``Pipeline`` it produces artifacts for.

    Build it with :func:`~airflow_kedro_mlflow.pipeline.pipeline_ml_factory`. The nodes of this pipeline are the
    training nodes; ``inference``, ``input_name``, ``kpm_kwargs`` (arguments of ``KedroPipelineModel``) and
    ``log_model_kwargs`` (arguments of ``mlflow.pyfunc.log_model``) describe the model logged after training.
    """

    def __init__(
        self,
        nodes: Iterable[Node | Pipeline] | Pipeline,
        *,
        inference: Pipeline,
        input_name: str,
        kpm_kwargs: dict[str, Any] | None = None,
        log_model_kwargs: dict[str, Any] | None = None,
        tags: str | Iterable[str] | None = None,
    ) -> None:
        """Build the training pipeline from ``nodes`` and check it against ``inference``.

        :param nodes: the training nodes (or pipelines whose nodes are taken).
        :param inference: the pipeline logged as the model; exactly one output.
        :param input_name: the inference input that receives the data to predict on.
        :param kpm_kwargs: keyword arguments for ``KedroPipelineModel`` (``runner``, ``copy_mode``).
        :param log_model_kwargs: keyword arguments for ``mlflow.pyfunc.log_model``.
        :param tags: tags added to every training node, as in ``kedro.pipeline.Pipeline``.
        :raises PipelineMLError: when the pair breaks a rule of DESIGN.md "PipelineML rules".
        """
        super().__init__(nodes, tags=tags)
        self._training: Pipeline | None = None
        validate_pipeline_ml(self, inference, input_name)
        self.inference = inference
        self.input_name = input_name
        self.kpm_kwargs: dict[str, Any] = dict(kpm_kwargs or {})
        self.log_model_kwargs: dict[str, Any] = dict(log_model_kwargs or {})

    @property
    def training(self) -> Pipeline:
        """The training nodes as a plain ``Pipeline`` (filtering it never raises and never logs a model)."""
        if self._training is None:
            self._training = Pipeline(self.nodes)
        return self._training

    def artifact_inputs(self) -> list[str]:
        """The inference inputs shipped with the model: every inference input except ``input_name``, sorted."""
        return artifact_inputs(self.inference, self.input_name)

    def _with_training(self, training: Pipeline) -> PipelineML:
        return PipelineML(
            training.nodes,
            inference=self.inference,
            input_name=self.input_name,
            kpm_kwargs=self.kpm_kwargs,
            log_model_kwargs=self.log_model_kwargs,
        )

    def _filtered(self, operation: str, result: Pipeline, *, strict: bool = True) -> Pipeline:
        """Turn the result of a filter on the training nodes into a ``PipelineML`` when it stays consistent.

        Otherwise raise (``strict``) or, for the selection methods Kedro calls internally, return the plain
        ``Pipeline`` with a warning naming what is dropped.
        """
        if set(result.nodes) == set(self.nodes):
            return self
        missing = missing_inference_inputs(result, self.inference, self.input_name)
        if missing and not strict:
            warnings.warn(
                f"{operation} on PipelineML {_short(self)!r} drops {format_names(missing)}, which the inference "
                "pipeline needs: the result is a plain Pipeline and no model will be logged when it runs.",
                UserWarning,
                stacklevel=3,
            )
            return result
        if missing:
            raise PipelineMLError(
                f"{operation} on the training pipeline drops {format_names(missing)}, which the inference pipeline "
                f"needs: no remaining training node reads or produces them, so the logged model would not match "
                f"its training. Keep the nodes that produce them in the selection, or filter the plain training "
                f"pipeline (`.training.{operation.split('(', maxsplit=1)[0]}(...)`) if no model should be logged."
            )
        return self._with_training(result)

    def _combined(self, other: Pipeline, operation: str, result_nodes: set[Node]) -> Pipeline:
        """Return ``self`` when ``other`` changes nothing, else a plain ``Pipeline`` and a no-model warning."""
        same_binding = not _looks_like_pipeline_ml(other) or (
            other.inference is self.inference and other.input_name == self.input_name
        )
        if result_nodes == set(self.nodes) and same_binding:
            return self
        warnings.warn(NO_MODEL_WARNING.format(training=_short(self), operation=operation), UserWarning, stacklevel=3)
        return Pipeline(result_nodes)

    def __add__(self, other: Any) -> Pipeline:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._combined(other, f"+ {_short(other)}", set(self.nodes) | set(other.nodes))

    def __radd__(self, other: Any) -> Pipeline:
        if isinstance(other, int) and other == 0:
            return self
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._combined(other, f"{_short(other)} +", set(self.nodes) | set(other.nodes))

    def __or__(self, other: Any) -> Pipeline:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._combined(other, f"| {_short(other)}", set(self.nodes) | set(other.nodes))

    def __ror__(self, other: Any) -> Pipeline:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._combined(other, f"{_short(other)} |", set(self.nodes) | set(other.nodes))

    def __sub__(self, other: Any) -> Pipeline:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._combined(other, f"- {_short(other)}", set(self.nodes) - set(other.nodes))

    def __and__(self, other: Any) -> Pipeline:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._filtered(f"& {_short(other)}", Pipeline(set(self.nodes) & set(other.nodes)))

    def __rand__(self, other: Any) -> Pipeline:
        return self.__and__(other)

    def only_nodes(self, *node_names: str) -> Pipeline:
        return self._filtered(f"only_nodes{node_names!r}", self.training.only_nodes(*node_names), strict=False)

    def only_nodes_with_namespaces(self, node_namespaces: list[str]) -> Pipeline:
        return self._filtered(
            f"only_nodes_with_namespaces({node_namespaces!r})",
            self.training.only_nodes_with_namespaces(node_namespaces),
            strict=False,
        )

    def only_nodes_with_inputs(self, *inputs: str) -> Pipeline:
        return self._filtered(
            f"only_nodes_with_inputs{inputs!r}", self.training.only_nodes_with_inputs(*inputs), strict=False
        )

    def from_inputs(self, *inputs: str) -> Pipeline:
        return self._filtered(f"from_inputs{inputs!r}", self.training.from_inputs(*inputs), strict=False)

    def only_nodes_with_outputs(self, *outputs: str) -> Pipeline:
        return self._filtered(
            f"only_nodes_with_outputs{outputs!r}", self.training.only_nodes_with_outputs(*outputs), strict=False
        )

    def to_outputs(self, *outputs: str) -> Pipeline:
        return self._filtered(f"to_outputs{outputs!r}", self.training.to_outputs(*outputs), strict=False)

    def from_nodes(self, *node_names: str) -> Pipeline:
        return self._filtered(f"from_nodes{node_names!r}", self.training.from_nodes(*node_names), strict=False)

    def to_nodes(self, *node_names: str) -> Pipeline:
        return self._filtered(f"to_nodes{node_names!r}", self.training.to_nodes(*node_names), strict=False)

    def only_nodes_with_tags(self, *tags: str) -> Pipeline:
        return self._filtered(f"only_nodes_with_tags{tags!r}", self.training.only_nodes_with_tags(*tags), strict=False)

    def filter(  # noqa: PLR0917 - kedro's own signature
        self,
        tags: Iterable[str] | None = None,
        from_nodes: Iterable[str] | None = None,
        to_nodes: Iterable[str] | None = None,
        node_names: Iterable[str] | None = None,
        from_inputs: Iterable[str] | None = None,
        to_outputs: Iterable[str] | None = None,
        node_namespaces: Iterable[str] | None = None,
    ) -> Pipeline:
        """Filter the training nodes as ``Pipeline.filter`` does; no argument returns this ``PipelineML`` itself."""
        arguments = {
            "tags": tags,
            "from_nodes": from_nodes,
            "to_nodes": to_nodes,
            "node_names": node_names,
            "from_inputs": from_inputs,
            "to_outputs": to_outputs,
            "node_namespaces": node_namespaces,
        }
        given = {key: value for key, value in arguments.items() if value}
        if not given:
            return self
        described = ", ".join(f"{key}={list(value)!r}" for key, value in given.items())
        return self._filtered(f"filter({described})", self.training.filter(**given))

    def tag(self, tags: str | Iterable[str]) -> PipelineML:
        """Tag every training node; the inference pipeline is left as it is."""
        return self._with_training(self.training.tag(tags))


def _looks_like_pipeline_ml(candidate: object) -> TypeGuard[PipelineMLLike]:
    return all(hasattr(candidate, attribute) for attribute in ("training", "inference", "input_name"))


def _short(pipeline: Pipeline) -> str:
    names = [node.name for node in pipeline.nodes]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{type(pipeline).__name__}([{shown}])"


def is_pipeline_ml(candidate: object) -> TypeGuard[PipelineMLLike]:
    """Tell whether ``candidate`` is a ``PipelineML``, ours or kedro-mlflow's (duck-typed on its attributes)."""
    return isinstance(candidate, PipelineML) or (isinstance(candidate, Pipeline) and _looks_like_pipeline_ml(candidate))


def as_pipeline_ml(candidate: Any) -> PipelineML:
    """Return ``candidate`` as our ``PipelineML``; a kedro-mlflow ``PipelineML`` is rebuilt (and re-checked).

    kedro-mlflow projects migrate by changing imports, but a registry may still hand us one of its objects: it has
    the same ``training``/``inference``/``input_name`` (and ``kpm_kwargs``/``log_model_kwargs``) attributes.

    :raises PipelineMLError: when ``candidate`` is not a ``PipelineML`` of either kind, or breaks a rule.
    """
    if isinstance(candidate, PipelineML):
        return candidate
    if not is_pipeline_ml(candidate):
        raise PipelineMLError(
            f"Expected a PipelineML (built with pipeline_ml_factory), got {type(candidate).__name__}. Bind the "
            f"training and inference pipelines with airflow_kedro_mlflow.pipeline.pipeline_ml_factory(...)."
        )
    training = candidate.training
    return PipelineML(
        training.nodes if isinstance(training, Pipeline) else training,
        inference=candidate.inference,
        input_name=candidate.input_name,
        kpm_kwargs=getattr(candidate, "kpm_kwargs", None),
        log_model_kwargs=getattr(candidate, "log_model_kwargs", None),
    )
