"""Score the model input with each new champion of the example classifier, as soon as it is promoted.

The DAG is scheduled on the Airflow asset of ``kedro_classifier@champion``: when ``MlflowPromoteModelOperator``
(in ``kedro_classifier_on_demand`` or ``kedro_classifier_retraining``) moves the ``champion`` alias to a new
version, it emits an event of that asset and Airflow starts this DAG. A promotion that keeps the old champion
emits nothing, so nothing is scored twice with the same model.

The scoring task asks for ``models:/kedro_classifier@champion`` and scores with exactly the version of the event that
triggered the run (the event's ``extra`` names it), even if the alias has moved again since; the version is in the
task's XCom and next to the output. Each run writes its own output file, which a retry overwrites.

The asset names the MLflow registry of the ``mlflow_default`` connection, read when this file is parsed (no call
to MLflow): the DAG processor needs the connection too, as the workers do. This file imports neither kedro nor
mlflow.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_kedro_mlflow.assets import mlflow_model_asset
from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator

PROJECT_PATH = os.environ.get(
    "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT", str(Path(__file__).resolve().parent / "kedro_classifier")
)
REGISTERED_MODEL_NAME = "kedro_classifier"

# [START champion_scoring_dag]
with DAG(
    dag_id="kedro_classifier_champion_scoring",
    description="Score the model input with each new champion of kedro_classifier, as soon as it is promoted.",
    schedule=[mlflow_model_asset(REGISTERED_MODEL_NAME, "champion")],
    params={
        "input_path": Param(
            f"{PROJECT_PATH}/data/05_model_input/instances.csv",
            type="string",
            description="CSV with a header row and the model's input columns.",
        ),
        "output_dir": Param(
            f"{PROJECT_PATH}/data/07_model_output/champion_scores",
            type="string",
            description="Folder that receives one Parquet file per DAG run: the input plus the predictions.",
        ),
    },
    tags=["kedro", "mlflow", "assets"],
) as dag:
    score = MlflowBatchPredictOperator(
        task_id="score",
        model_uri=f"models:/{REGISTERED_MODEL_NAME}@champion",  # pinned to the triggering event's version
        input_path="{{ params.input_path }}",
        output_path="{{ params.output_dir }}/{{ run_id | replace(':', '-') | replace('+', '-') }}.parquet",
        engine="pandas",
    )
# [END champion_scoring_dag]
