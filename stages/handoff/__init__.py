"""The hand-off to deployment: ONNX conversion, the parity gate against Keras, the model card.

The contract the ONNX model carries is ``digits_predict.contract``, the deployment side's.
"""
