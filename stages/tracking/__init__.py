"""MLflow: the store (``store``), the run one model lives in (``runs``), what each stage
records (``records``), the model registry (``registry``); ``python -m stages.tracking``
serves the UI. MLflow itself is imported only inside functions: it costs seconds.
"""
