"""Data audit: every clip scored on named, interpretable quality dimensions, with the evidence, and the cleaned dataset.

:func:`reelm.eval.audit.audit_run.audit_dataset` is what ``reelm data audit`` calls; the dimensions and their
defaults are in :mod:`reelm.eval.audit.audit_config`, the per-frame measurements in
:mod:`reelm.eval.audit.signals`, the verdicts in :mod:`reelm.eval.audit.dimensions`.
"""
