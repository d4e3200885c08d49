"""Serving the registered model over the Open Inference Protocol (KServe V2).

Two processes, two environments: ``python -m serving`` runs in the pipeline's ``.venv``
(it reads the registry and writes ``.serve/``), then hands over to MLServer, which runs in
``.venv-serve`` from ``requirements-serve.lock`` because it pins older fastapi, starlette
and protobuf than the pipeline. ``start``, ``reload`` and ``serve_folder`` (the files both
write in ``.serve/<port>/``) live on the pipeline's side; ``mlserver_app`` (MLServer behind
``guard``'s request checks), ``runtime`` and ``client`` on MLServer's; ``triton`` writes a
Triton model repository from the same ONNX file.

Nothing is imported here: each side imports only its own modules.
"""
