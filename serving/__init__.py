"""Serving the registered model over the Open Inference Protocol (KServe V2).

Two processes, two environments: ``python -m serving`` runs in the pipeline's ``.venv``
(it reads the registry and writes ``.serve/``), then hands over to MLServer, which runs in
``.venv-serve`` from ``requirements-serve.lock`` because it pins older fastapi, starlette
and protobuf than the pipeline. ``mlserver_app`` (MLServer behind ``guard``'s request
checks), ``runtime`` and ``client`` live on MLServer's side; ``triton`` writes a Triton
model repository from the same ONNX file.

Nothing is imported here: each side imports only its own modules.
"""
