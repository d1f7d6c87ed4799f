"""Watching the models: feature and score drift, matured performance, misjudgements, retrain triggers."""
