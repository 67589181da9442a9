"""End-to-end tier: a real Airflow (scheduler, api-server, dag-processor) and a real MLflow server with basic auth."""
