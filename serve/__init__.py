"""Serving side of leadscore: load a registered model and score leads (in memory, in batch, over HTTP)."""
