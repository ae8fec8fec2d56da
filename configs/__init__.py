"""Example training configs (YAML), shipped as package data: see `leadscore.examples` and `leadscore init DIR`."""
