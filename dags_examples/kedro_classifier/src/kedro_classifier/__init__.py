"""kedro_classifier: the example Kedro project trained and served by airflow-kedro-mlflow's example DAGs."""

__version__ = "0.1"
