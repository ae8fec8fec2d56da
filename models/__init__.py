"""Model side of leadscore: estimators, calibration, explanations, the model bundle and the MLflow registry."""
