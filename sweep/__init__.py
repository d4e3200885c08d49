"""Sweeps on Ray: a grid or a random search of DVC experiments of this pipeline.

Each trial is ``dvc exp run`` in a clone of the base commit on a Ray worker, pushed with
``dvc exp push``, and one MLflow run (the pipeline's own) under the sweep's parent run.
Nothing here is imported by the stages: Ray is needed by ``python -m sweep`` alone.
"""
