"""Validation: a raw batch checked against the active contract, and the validated store."""
