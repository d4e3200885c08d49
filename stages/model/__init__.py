"""The Keras classifier: ``build`` (architecture from params), ``elastic`` (the elastic
distortion layer), ``fit`` (seeded training),
``keras_io`` (the ``.keras`` file), ``history`` (per-epoch CSV), ``runtime`` (TensorFlow
imported without its CPU-machine noise).

``build`` imports Keras at module level; import it only where TensorFlow is wanted.
"""
