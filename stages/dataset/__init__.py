"""MNIST as data: the canonical arrays and digests, their file formats and sources, the splits.

No TensorFlow here: fetch and preprocess import only this package and ``common``.
"""
