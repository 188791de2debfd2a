"""Stages 3-4: training (paper §5-6). One module per trainer or training technique.

Import the module you need, e.g. ``from ftkit.train import classifier``.
"""
