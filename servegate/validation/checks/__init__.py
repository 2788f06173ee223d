"""The checks that are not expectations over the table: written in servegate's own code.

- :mod:`.contract` compares two signatures (structured data, not rows);
- :mod:`.metrics` computes the figures every check reports (MAE, RMSE,
  accuracy, AUC) — GX judges most of them through
  expectations over derived columns, but it has no AUC expectation, and
  the report wants the figure itself next to GX's verdict.
"""
