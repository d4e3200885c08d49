"""What a model's MLflow run records, as the pipeline's stages write it: the run one model
lives in (``runs``), what train logs (``training_run``) and the stages after it
(``records``, which never reach Keras), under which names (``metric_names``), the Keras
flavor (``keras_flavor``). The store, the registry and the champion rule they write to
are the shared ``tracking`` package. MLflow itself is imported only inside functions: it
costs seconds.
"""
