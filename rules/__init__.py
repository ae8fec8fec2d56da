"""Example rule sets (YAML), shipped as package data: see `leadscore.examples` and `leadscore init DIR`."""
