"""PipelineML rules: what the factory accepts, what combining and filtering give, and the errors' wording."""

from __future__ import annotations

import re

import pytest
from kedro.pipeline import Pipeline, node

from airflow_kedro_mlflow.exceptions import PipelineMLError
from airflow_kedro_mlflow.pipeline import PipelineML, as_pipeline_ml, is_pipeline_ml, pipeline_ml_factory


def fit_encoder(data):
    return sorted(set(data))


def fit_model(data, encoder):
    return {"encoder": encoder, "size": len(data)}


def evaluate(model, data):
    return model["size"] == len(data)


def predict(instances, encoder, model, threshold):
    return [value in encoder and model["size"] > threshold for value in instances]


def identity(value):
    return value


def both(first, second):
    return first, second


def training_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(fit_encoder, "raw_data", "encoder", name="fit_encoder", tags=["preprocessing"]),
            node(fit_model, ["raw_data", "encoder"], "model", name="fit_model", tags=["modelling"]),
            node(evaluate, ["model", "raw_data"], "score", name="evaluate", tags=["reporting"]),
        ]
    )


def inference_pipeline() -> Pipeline:
    return Pipeline(
        [node(predict, ["instances", "encoder", "model", "params:threshold"], "predictions", name="predict")]
    )


@pytest.fixture
def pipeline_ml() -> PipelineML:
    return pipeline_ml_factory(
        training_pipeline(),
        inference_pipeline(),
        input_name="instances",
        kpm_kwargs={"copy_mode": "deepcopy"},
        log_model_kwargs={"name": "model", "signature": "auto"},
    )


# -- the factory -------------------------------------------------------------------------------------------------


def test_factory_binds_training_and_inference(pipeline_ml):
    assert isinstance(pipeline_ml, PipelineML)
    assert set(pipeline_ml.nodes) == set(training_pipeline().nodes)
    assert type(pipeline_ml.training) is Pipeline and set(pipeline_ml.training.nodes) == set(pipeline_ml.nodes)
    assert pipeline_ml.inference.outputs() == {"predictions"}
    assert pipeline_ml.input_name == "instances"
    assert pipeline_ml.kpm_kwargs == {"copy_mode": "deepcopy"}
    assert pipeline_ml.log_model_kwargs == {"name": "model", "signature": "auto"}
    assert pipeline_ml.artifact_inputs() == ["encoder", "model", "params:threshold"]


def test_defaults_are_empty_dicts_owned_by_each_pipeline():
    first = pipeline_ml_factory(training_pipeline(), inference_pipeline(), "instances")
    second = pipeline_ml_factory(training_pipeline(), inference_pipeline(), "instances")
    assert first.kpm_kwargs == first.log_model_kwargs == {}
    first.kpm_kwargs["runner"] = object()
    assert second.kpm_kwargs == {}


def test_input_name_outside_inference_raises():
    with pytest.raises(PipelineMLError, match=re.escape("input_name='instance' is not an input")) as error:
        pipeline_ml_factory(training_pipeline(), inference_pipeline(), input_name="instance")
    message = str(error.value)
    assert "its inputs are ['encoder', 'instances', 'model', 'params:threshold']" in message
    assert "Did you mean 'instances'?" in message


def test_parameter_as_input_name_raises():
    with pytest.raises(PipelineMLError, match=re.escape("input_name='params:threshold' is a parameter")):
        pipeline_ml_factory(training_pipeline(), inference_pipeline(), input_name="params:threshold")


def test_input_name_must_be_a_string():
    with pytest.raises(PipelineMLError, match=re.escape("input_name must be the name of the inference input")):
        pipeline_ml_factory(training_pipeline(), inference_pipeline(), input_name=None)


def test_inference_input_unknown_to_training_raises_with_suggestion():
    inference = Pipeline([node(predict, ["instances", "encodr", "model", "params:threshold"], "predictions")])
    with pytest.raises(PipelineMLError, match=re.escape("Inference input(s) ['encodr'] are neither")) as error:
        pipeline_ml_factory(training_pipeline(), inference, input_name="instances")
    assert "Did you mean 'encoder'?" in str(error.value)


def test_inference_may_read_what_training_reads_and_transcoded_outputs():
    training = Pipeline(
        [node(fit_model, ["raw_data", "lookup"], "model@pickle", name="fit_model")],
    )
    inference = Pipeline([node(predict, ["instances", "lookup", "model@joblib", "params:t"], "predictions")])
    bound = pipeline_ml_factory(training, inference, input_name="instances")
    assert bound.artifact_inputs() == ["lookup", "model@joblib", "params:t"]


@pytest.mark.parametrize(
    ("outputs", "found"),
    [(None, "it has none"), (["first", "second"], "it has 2: ['first', 'second']")],
)
def test_inference_without_exactly_one_output_raises(outputs, found):
    function = both if outputs else (lambda instances, model: None)
    inference = Pipeline([node(function, ["instances", "model"], outputs, name="predict")])
    with pytest.raises(PipelineMLError, match=re.escape(f"must have exactly one output (the prediction), {found}")):
        pipeline_ml_factory(training_pipeline(), inference, input_name="instances")


@pytest.mark.parametrize("role", ["training", "inference"])
def test_non_pipelines_raise(role):
    arguments = {"training": training_pipeline(), "inference": inference_pipeline(), role: [identity]}
    with pytest.raises(PipelineMLError, match=re.escape(f"{role} must be a kedro.pipeline.Pipeline, got list")):
        pipeline_ml_factory(**arguments, input_name="instances")


def test_empty_inference_raises():
    with pytest.raises(PipelineMLError, match="The inference pipeline has no nodes"):
        pipeline_ml_factory(training_pipeline(), Pipeline([]), input_name="instances")


def test_unknown_kpm_kwargs_raise_with_suggestion():
    with pytest.raises(PipelineMLError, match=re.escape("kpm_kwargs has unknown key(s) ['copymode']")) as error:
        pipeline_ml_factory(training_pipeline(), inference_pipeline(), "instances", kpm_kwargs={"copymode": "copy"})
    assert "Did you mean 'copy_mode'?" in str(error.value)


def test_log_model_kwargs_the_factory_builds_itself_raise():
    with pytest.raises(PipelineMLError, match=re.escape("log_model_kwargs sets ['artifacts', 'python_model']")):
        pipeline_ml_factory(
            training_pipeline(),
            inference_pipeline(),
            "instances",
            log_model_kwargs={"python_model": None, "artifacts": {}, "name": "model"},
        )


def test_kwargs_must_be_dicts():
    with pytest.raises(PipelineMLError, match=re.escape("log_model_kwargs must be a dict of keyword arguments")):
        pipeline_ml_factory(training_pipeline(), inference_pipeline(), "instances", log_model_kwargs=["name"])


# -- how kedro 1.x handles registered pipelines --------------------------------------------------------------------


def test_kedro_session_run_keeps_the_pipeline_ml(pipeline_ml):
    """KedroSession.run does ``Pipeline([]) + pipelines[name]`` then ``.filter()`` with every filter unset."""
    combined = Pipeline([]) + pipeline_ml
    assert combined is pipeline_ml
    unset = {"tags": None, "from_nodes": None, "to_nodes": None, "node_names": None, "from_inputs": None}
    assert combined.filter(**unset, to_outputs=None, node_namespaces=None) is pipeline_ml
    assert pipeline_ml + Pipeline([]) is pipeline_ml
    assert pipeline_ml + pipeline_ml is pipeline_ml


def test_sum_of_a_single_pipeline_ml_is_itself(pipeline_ml):
    assert sum([pipeline_ml]) is pipeline_ml


def test_default_registry_sum_gives_a_plain_pipeline_with_a_warning(pipeline_ml):
    other = Pipeline([node(identity, "x", "y", name="other")])
    with pytest.warns(UserWarning, match="no model will be logged"):
        default = sum([pipeline_ml, other])
    assert type(default) is Pipeline
    assert set(default.nodes) == set(pipeline_ml.nodes) | set(other.nodes)


@pytest.mark.parametrize(
    "combine",
    [
        lambda ml, other: ml + other,
        lambda ml, other: other + ml,
        lambda ml, other: ml | other,
        lambda ml, other: other | ml,
    ],
    ids=["add", "radd", "or", "ror"],
)
def test_adding_other_nodes_gives_a_plain_pipeline_with_a_warning(pipeline_ml, combine):
    other = Pipeline([node(identity, "x", "y", name="other")])
    with pytest.warns(UserWarning, match=re.escape("gives a plain Pipeline")):
        result = combine(pipeline_ml, other)
    assert type(result) is Pipeline and len(result.nodes) == 4


def test_adding_another_pipeline_ml_gives_a_plain_pipeline(pipeline_ml):
    inference = Pipeline([node(identity, "instances", "predictions", name="echo")])
    other = pipeline_ml_factory(Pipeline(pipeline_ml.nodes[:1]), inference, "instances")
    with pytest.warns(UserWarning, match="no model will be logged"):
        result = pipeline_ml + other
    assert type(result) is Pipeline


def test_subtracting_nodes_gives_a_plain_pipeline_and_unrelated_ones_change_nothing(pipeline_ml):
    evaluate_only = pipeline_ml.training.only_nodes("evaluate")
    with pytest.warns(UserWarning, match="no model will be logged"):
        result = pipeline_ml - evaluate_only
    assert type(result) is Pipeline and len(result.nodes) == 2
    assert pipeline_ml - Pipeline([node(identity, "x", "y", name="other")]) is pipeline_ml


def test_non_pipelines_are_not_combined(pipeline_ml):
    with pytest.raises(TypeError):
        pipeline_ml + 1


# -- filters -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apply", "kept"),
    [
        (lambda p: p.only_nodes_with_tags("preprocessing", "modelling"), {"fit_encoder", "fit_model"}),
        (lambda p: p.filter(tags=["modelling"]), {"fit_model"}),
        (lambda p: p.from_nodes("fit_model"), {"fit_model", "evaluate"}),
        (lambda p: p.to_nodes("fit_model"), {"fit_encoder", "fit_model"}),
        (lambda p: p.only_nodes("fit_model"), {"fit_model"}),
        (lambda p: p.from_inputs("encoder"), {"fit_model", "evaluate"}),
        (lambda p: p.to_outputs("model"), {"fit_encoder", "fit_model"}),
        (lambda p: p.only_nodes_with_inputs("encoder"), {"fit_model"}),
        (lambda p: p.only_nodes_with_outputs("model"), {"fit_model"}),
        (lambda p: p & p.training.only_nodes("fit_model"), {"fit_model"}),
    ],
)
def test_filters_keeping_every_inference_input_stay_pipeline_ml(pipeline_ml, apply, kept):
    filtered = apply(pipeline_ml)
    assert isinstance(filtered, PipelineML)
    assert {n.name for n in filtered.nodes} == kept == {n.name for n in filtered.training.nodes}
    assert filtered.inference is pipeline_ml.inference
    assert (filtered.input_name, filtered.kpm_kwargs, filtered.log_model_kwargs) == (
        pipeline_ml.input_name,
        pipeline_ml.kpm_kwargs,
        pipeline_ml.log_model_kwargs,
    )


def test_a_filter_that_keeps_everything_returns_the_same_object(pipeline_ml):
    assert pipeline_ml.filter(tags=["preprocessing", "modelling", "reporting"]) is pipeline_ml


@pytest.mark.parametrize(
    ("apply", "operation", "missing"),
    [
        (lambda p: p.filter(node_names=["evaluate"]), "filter(node_names=['evaluate'])", "['encoder']"),
        (lambda p: p.filter(from_nodes=["evaluate"]), "filter(from_nodes=['evaluate'])", "['encoder']"),
        (lambda p: p & p.training.only_nodes("evaluate"), "& ", "['encoder']"),
    ],
)
def test_filters_dropping_an_artifact_raise_naming_it(pipeline_ml, apply, operation, missing):
    with pytest.raises(PipelineMLError, match=re.escape(f"drops {missing}, which the inference pipeline needs")) as e:
        apply(pipeline_ml)
    assert str(e.value).startswith(operation)


@pytest.mark.parametrize(
    ("apply", "operation", "missing"),
    [
        (lambda p: p.only_nodes_with_tags("reporting"), "only_nodes_with_tags('reporting',)", "['encoder']"),
        (lambda p: p.from_nodes("evaluate"), "from_nodes('evaluate',)", "['encoder']"),
        (lambda p: p.only_nodes("fit_encoder"), "only_nodes('fit_encoder',)", "['model']"),
        (lambda p: p.only_nodes_with_outputs("score"), "only_nodes_with_outputs('score',)", "['encoder']"),
    ],
)
def test_selections_dropping_an_artifact_give_a_plain_pipeline_with_a_warning(pipeline_ml, apply, operation, missing):
    with pytest.warns(UserWarning, match=re.escape(f"drops {missing}, which the inference pipeline needs")) as record:
        selected = apply(pipeline_ml)
    assert str(record[0].message).startswith(operation)
    assert type(selected) is Pipeline


def test_a_failing_training_node_surfaces_its_own_error_not_a_pipeline_ml_error(pipeline_ml):
    """Kedro's runner calls from_nodes/only_nodes_with_outputs on the PipelineML to suggest a resume point."""
    from kedro.io import DataCatalog
    from kedro.pipeline import node
    from kedro.runner import SequentialRunner

    def boom(_model):
        raise ZeroDivisionError("evaluate failed on purpose")

    nodes = [n if n.name != "evaluate" else node(boom, "model", "score", name="evaluate") for n in pipeline_ml.nodes]
    failing = pipeline_ml_factory(Pipeline(nodes), pipeline_ml.inference, input_name=pipeline_ml.input_name)
    catalog = DataCatalog()
    catalog["raw_data"] = ["a", "b", "a"]
    with pytest.raises(ZeroDivisionError, match="evaluate failed on purpose"), pytest.warns(UserWarning):
        SequentialRunner().run(failing, catalog)


def test_filtering_the_plain_training_pipeline_never_raises(pipeline_ml):
    assert type(pipeline_ml.training.only_nodes_with_tags("reporting")) is Pipeline


def test_tag_tags_training_nodes_and_keeps_the_binding(pipeline_ml):
    tagged = pipeline_ml.tag("nightly")
    assert isinstance(tagged, PipelineML) and tagged.inference is pipeline_ml.inference
    assert all("nightly" in n.tags for n in tagged.nodes)
    assert not any("nightly" in n.tags for n in pipeline_ml.nodes)


# -- kedro-mlflow's PipelineML, duck-typed -------------------------------------------------------------------------


class ForeignPipelineML(Pipeline):
    """Stands for kedro-mlflow's PipelineML: a Pipeline with training/inference/input_name attributes."""

    def __init__(self, nodes, *, inference, input_name, kpm_kwargs=None, log_model_kwargs=None):
        super().__init__(nodes)
        self.inference, self.input_name = inference, input_name
        self.kpm_kwargs, self.log_model_kwargs = kpm_kwargs or {}, log_model_kwargs or {}

    @property
    def training(self) -> Pipeline:
        return Pipeline(self.nodes)


def test_a_kedro_mlflow_pipeline_ml_is_accepted_and_rechecked():
    foreign = ForeignPipelineML(
        training_pipeline().nodes,
        inference=inference_pipeline(),
        input_name="instances",
        log_model_kwargs={"artifact_path": "model"},
    )
    assert is_pipeline_ml(foreign)
    ours = as_pipeline_ml(foreign)
    assert isinstance(ours, PipelineML) and set(ours.nodes) == set(foreign.nodes)
    assert (ours.inference, ours.input_name, ours.log_model_kwargs) == (
        foreign.inference,
        "instances",
        {"artifact_path": "model"},
    )
    broken = ForeignPipelineML(training_pipeline().nodes, inference=inference_pipeline(), input_name="nope")
    with pytest.raises(PipelineMLError, match=re.escape("input_name='nope' is not an input")):
        as_pipeline_ml(broken)


def test_as_pipeline_ml_returns_ours_unchanged_and_refuses_plain_pipelines(pipeline_ml):
    assert as_pipeline_ml(pipeline_ml) is pipeline_ml
    assert not is_pipeline_ml(training_pipeline())
    with pytest.raises(PipelineMLError, match=re.escape("Expected a PipelineML (built with pipeline_ml_factory)")):
        as_pipeline_ml(training_pipeline())
