"""Language-model clients and the MLflow pyfunc wrapper."""
