"""Ray Tune sweeps of pretraining jobs (context length x weight bit width), tracked in MLflow."""
