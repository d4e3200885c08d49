"""A Keras script classifying one PNG: what the predictor command is compared with.

Standalone on purpose, like a tutorial reader's script: no project imports.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
from PIL import Image


def main() -> None:
    model = keras.saving.load_model(sys.argv[1], compile=False)
    image = Image.open(sys.argv[2]).convert("L").resize((28, 28))
    probabilities = model.predict(np.asarray(image, dtype="float32")[None], verbose=0)[0]
    print(f"{sys.argv[2]}: digit {int(probabilities.argmax())} (p={probabilities.max():.3f})")


if __name__ == "__main__":
    main()
