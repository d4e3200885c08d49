"""What the tests build: tiny data and its files, params, MLflow stores, ONNX models, a tiny
trained model, stage arguments, the import graph.

Plain functions, imported as ``from factories.<module> import …`` (``tests/`` is on
pytest's ``pythonpath``); the fixtures that wrap them live in ``conftest.py``. What the
benchmarks use too (the project copy, stage commands, ports, the browser, the team stack)
is the ``harness`` package, which these import.
"""
