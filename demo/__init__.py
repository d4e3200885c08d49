"""The draw-a-digit page: the pipeline's ONNX model run in the browser by onnxruntime-web.

``page/`` holds the page's sources, ``build`` writes the site (page, runtime, models),
``serve`` serves it on 127.0.0.1, and ``python -m demo`` (``make demo``) puts the current
models into the built site and serves it.
"""
