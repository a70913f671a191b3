"""Intake: a delivery in the drop folder becomes a claimed batch and a raw snapshot."""
