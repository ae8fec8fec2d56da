"""Feature side of leadscore: tabular I/O, labels and point-in-time features."""
