"""``python -m report``: what a change did to the model, as one Markdown page with its images.

Compares the workspace (or a git revision, or a DVC experiment) with a base (by default the
merge base with ``main``): the params that changed, the test metrics with their deltas, both
gates, what the champion rule makes of it, per-digit F1 changes, the training curves and
confusion matrices of both sides, their MLflow runs, and the versions of the stack.

The two sides' results are read from git (``reports/`` is committed) and compared with
DVC's own ``params diff`` and ``metrics diff``; MLflow is consulted when its store is there.
"""
