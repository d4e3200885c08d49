"""The MNIST pipeline's DVC stages.

The six entry points sit at the top, each run as ``python -m stages.<name>`` by
dvc.yaml: ``fetch``, ``preprocess``, ``train``, ``evaluate``, ``export``, ``quantize``. Each parses
its arguments, loads its typed params, calls a pure core and writes its outputs
atomically. The subpackages hold what they compose, one concern each:

- ``dataset``: canonical MNIST and its digests, file formats, sources, splits, prepared arrays
- ``model``: building and fitting the Keras classifier, its file, its training history,
  TensorFlow imported quietly
- ``evaluation``: test metrics and the figures a person looks at
- ``handoff``: ONNX conversion, the parity gate, the model card, the registration both
  hand-offs share, the int8 model and its gate
- ``run_record``: the run a model is trained in, what each stage logs and under which names

What every entry point shares (params, one-line errors, atomic writes) is the ``kernel``
package; the MLflow store and registry are the ``tracking`` package. Nothing here imports
an optional capability (serving, demo, team, sweep, bench).

Nothing happens at import time, and TensorFlow, MLflow and onnx load only where they
are needed (inside functions, or in ``model.build``, which is itself imported lazily),
so fetch and preprocess start in well under a second and never load them.
"""
