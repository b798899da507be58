"""Confusion-matrix segmentation metrics (placeholder until the metrics module lands)."""
