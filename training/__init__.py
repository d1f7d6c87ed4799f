"""Model fitting, evaluation, MLflow tracking and the registry."""
