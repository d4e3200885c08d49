"""The hand-off to deployment: ONNX conversion, the parity gate against Keras, the model card,
and the rule that decides when a new model becomes ``@champion`` (``promotion``).

The contract the ONNX model carries is ``digits_predict.contract``, the deployment side's.
"""
