"""Score DataFrame chunks with a loaded pyfunc model in this process, and append input + predictions to the output.

The model is loaded once by the caller; each chunk goes through ``PyFuncModel.predict`` (MLflow's schema enforcement
included, as when the model is served). The first chunk's columns are checked against the model's signature before
any row is predicted or written, so an input lacking a column fails with the names of the missing columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import ScoringInputError, ScoringOutputError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    from airflow_kedro_mlflow.scoring.output import TableWriter

logger = logging.getLogger(__name__)

#: MLflow error codes of a prediction input the model refuses (schema enforcement), i.e. bad input, not a model bug.
_BAD_INPUT_CODES = frozenset({"BAD_REQUEST", "INVALID_PARAMETER_VALUE"})


def check_columns(metadata: Model, columns: Iterable[str], *, model_uri: str, source: str) -> None:
    """Refuse an input that lacks columns the signature in a model's ``metadata`` (its ``MLmodel``) requires.

    :raises ScoringInputError: naming the missing columns, the model and the input, with the columns it has.
    """
    schema = metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return
    present = set(map(str, columns))
    missing = [name for name in schema.required_input_names() if str(name) not in present]
    if missing:
        raise ScoringInputError(
            f"input {source} lacks column(s) {sorted(map(str, missing))} that the signature of model {model_uri} "
            f"requires; the input has {sorted(present)}. Score a table with the model's input columns (they are "
            "listed on the model version's page in the MLflow UI)."
        )


def score_chunks(
    model: PyFuncModel,
    chunks: Iterable[pd.DataFrame],
    writer: TableWriter,
    *,
    model_uri: str,
    source: str,
    params: Mapping[str, Any] | None = None,
) -> int:
    """Predict every chunk and append the input columns plus the prediction columns to ``writer``; return the rows."""
    from mlflow.exceptions import MlflowException

    first: pd.DataFrame | None = None
    for chunk in chunks:
        if first is None:
            check_columns(model.metadata, chunk.columns, model_uri=model_uri, source=source)
            first = chunk.iloc[:0]
        if chunk.empty:
            continue
        try:
            predictions = model.predict(chunk, params=dict(params) if params else None)
        except MlflowException as exc:
            if exc.error_code not in _BAD_INPUT_CODES:
                raise
            raise ScoringInputError(
                f"model {model_uri} refused rows {writer.rows}..{writer.rows + len(chunk) - 1} of input {source}: "
                f"{exc.message}"
            ) from exc
        writer.write(with_predictions(chunk, predictions))
        logger.info("Scored %d rows of %s", writer.rows, source)
    if writer.rows == 0 and first is not None:
        writer.write(first)  # an empty input gives an empty output with the input's columns
    return writer.rows


def with_predictions(chunk: pd.DataFrame, predictions: Any) -> pd.DataFrame:
    """The chunk's columns followed by the prediction columns (a DataFrame's own, else ``prediction``)."""
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        scored = predictions
    elif isinstance(predictions, pd.Series):
        scored = predictions.to_frame(predictions.name if predictions.name is not None else "prediction")
    else:
        values = np.asarray(predictions)
        if values.ndim == 2:
            scored = pd.DataFrame(values, columns=[f"prediction_{index}" for index in range(values.shape[1])])
        else:
            scored = pd.DataFrame({"prediction": values})
    if len(scored) != len(chunk):
        raise ScoringOutputError(
            f"the model returned {len(scored)} predictions for {len(chunk)} rows; batch scoring needs one per row."
        )
    clashes = sorted(set(map(str, scored.columns)) & set(map(str, chunk.columns)))
    if clashes:
        raise ScoringOutputError(
            f"the model's prediction column(s) {clashes} have the names of input columns; rename them in the input."
        )
    return pd.concat([chunk.reset_index(drop=True), scored.reset_index(drop=True)], axis=1)
