"""The notebook layer: parameter panels and figures, thin over the pure functions below.

- :mod:`~ftkit.ui.panel` — the widget panel built from a notebook's parameter schema;
- :mod:`~ftkit.ui.plots` — showing and saving figures.
"""
