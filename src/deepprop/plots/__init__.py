"""Matplotlib figures mirroring the paper's (PNG, Agg backend)."""
