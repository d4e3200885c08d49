"""The hand-off to deployment: ONNX conversion, the parity gate against Keras, the model card,
the drawn test set the champion rule weighs (``drawn_set``; the rule itself is
``tracking.champion``), the all-or-nothing registration both models go through
(``registration``), and the int8 model with its own gate against the fp32 one
(``quantization``, ``int8_gate``).

The contract the ONNX models carry is ``digits_predict.contract``, the deployment side's.
"""
