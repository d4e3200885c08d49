"""What the tests build: tiny data and its files, params, MLflow stores, ONNX models, processes.

Plain functions, imported as ``from factories.<module> import …`` (``tests/`` is on
pytest's ``pythonpath``); the fixtures that wrap them live in ``conftest.py``.
"""
