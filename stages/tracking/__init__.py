"""MLflow: the store (``store``), the run one model lives in (``runs``), what each stage
records (``records``) under which names (``metric_names``), the model registry
(``registry``), the Keras flavor (``keras_flavor``); ``python -m stages.tracking`` serves
the UI and downloads a registered model by alias. MLflow itself is imported only inside
functions: it costs seconds.
"""
