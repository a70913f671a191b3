"""Training: features, model, the MLflow registry, and the retrain policy."""
