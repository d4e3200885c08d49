"""The errors digits_predict reports: each carries one line a user can act on.

They derive from ``ValueError`` because each one means "this value (a model file, an image,
an array) is not what the contract expects", and callers that already catch ``ValueError``
keep working.
"""

from __future__ import annotations


class PredictError(ValueError):
    """Base of every error digits_predict raises on purpose; its message is one line."""


class ModelLoadError(PredictError):
    """The model file is missing, unreadable, or not an ONNX model onnxruntime can load."""


class ContractError(PredictError):
    """The model's metadata or graph disagrees with the input/output contract."""


class InputError(PredictError):
    """An image, array or input file is not something the model can be asked about."""
