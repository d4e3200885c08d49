"""The Keras classifier: ``build`` (architecture from params), ``fit`` (seeded training),
``keras_io`` (the ``.keras`` file), ``history`` (per-epoch CSV).

``build`` imports Keras at module level; import it only where TensorFlow is wanted.
"""
