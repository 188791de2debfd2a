"""Stage 1: data preparation (paper §3). One module per step: loading, validation, cleaning,
PII redaction, formatting, splitting, augmentation and synthesis, balancing.

Import the step you need, e.g. ``from ftkit.data import clean``.
"""
