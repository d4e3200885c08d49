"""Judging a trained model on the test set: metrics (pure numpy) and matplotlib figures."""
