"""MLflow access that every entry point shares: the store and the model registry.

- ``store``: where runs go (``MLFLOW_TRACKING_URI``, else ``mlflow.db`` at the workspace
  root), reached and checked before any work, and writes that wait out a locked store
- ``registry``: registered versions, their aliases and tags, and downloading one by alias

``python -m tracking`` serves the MLflow UI on the store and downloads a registered model
by alias (``make ui``, ``make champion``). MLflow itself is imported only inside
functions: it costs seconds.
"""
