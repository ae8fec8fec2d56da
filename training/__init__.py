"""Training side of leadscore: time split, fitting, calibration, evaluation and the demo pipeline."""
