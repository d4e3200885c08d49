"""DVC stages of the MNIST pipeline, one module per stage, run as ``python -m stages.<name>``."""
