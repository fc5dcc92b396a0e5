"""Evaluation: verification metrics and deterministic degraded-probe conditions."""
