"""MNIST digit classifier: a small CNN over flattened 28x28 images.

The served model takes 784 floats in [0, 1] per instance (input "pixels") and
returns 10 class probabilities.  Train, deploy and query it with:

    python examples/train_cnn.py
    cloudml deploy build/models/cnn.h5 --name mnist-cnn
    cloudml predict mnist-cnn --file build/models/cnn.sample.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running the script puts this folder on sys.path already; importing it as
# `examples.train_cnn` does not, and the sibling modules are plain modules.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import keras  # noqa: E402

from _common import parse_args, save_outputs  # noqa: E402
from seed_data import load_mnist  # noqa: E402

DEFAULT_EPOCHS = 3


def build_model() -> keras.Model:
    model = keras.Sequential(
        [
            # Flat input keeps request payloads identical to the autoencoder's.
            keras.Input(shape=(784,), name="pixels"),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _train(epochs: int, limit: int | None, seed: int, verbose: int = 0):
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(limit=limit, seed=seed)
    model = build_model()
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    instances = [[round(float(v), 4) for v in row] for row in x_test[:3]]
    return model, instances, {"loss": loss, "accuracy": accuracy}


def train(*, epochs: int = DEFAULT_EPOCHS, limit: int | None = None, seed: int = 0):
    """Train in-process; return (model, first 3 test instances as request-ready lists)."""
    model, instances, _ = _train(epochs, limit, seed)
    return model, instances


def main(argv=None) -> None:
    args = parse_args("cnn", DEFAULT_EPOCHS, "Train the MNIST CNN example.", argv)
    model, instances, metrics = _train(args.epochs, args.limit, args.seed, verbose=2)
    print(f"test loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}")
    for path in save_outputs(model, instances, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
