"""leadscore: calibrated lead conversion scores with readable reasons (application layer and CLI)."""

__version__ = "0.1.0"
