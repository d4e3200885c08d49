"""What the pipeline's stages record in MLflow: the run one model lives in (``runs``), what
train logs (``training_run``) and the stages after it (``records``, which never reach
Keras), under which names (``metric_names``), the Keras flavor (``keras_flavor``). The
store and the registry they write to are the shared ``tracking`` package. MLflow itself
is imported only inside functions: it costs seconds.
"""
