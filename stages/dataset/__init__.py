"""MNIST as data: the canonical arrays and digests, their file formats and sources, the splits.

No TensorFlow, MLflow or onnx here: fetch and preprocess import only this package,
``common`` and the deployment contract (``digits_predict.contract``).
"""
