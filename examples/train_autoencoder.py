"""MNIST autoencoder: squeezes 784 pixels through a 16-unit bottleneck and back.

The served model takes 784 floats in [0, 1] per instance (input "pixels") and
returns the 784-float reconstruction.  Train, deploy and query it with:

    python examples/train_autoencoder.py
    cloudml deploy build/models/autoencoder.h5 --name mnist-autoencoder
    cloudml predict mnist-autoencoder --file build/models/autoencoder.sample.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running the script puts this folder on sys.path already; importing it as
# `examples.train_autoencoder` does not, and the sibling modules are plain modules.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import keras  # noqa: E402

from _common import parse_args, save_outputs  # noqa: E402
from seed_data import load_mnist  # noqa: E402

DEFAULT_EPOCHS = 10


def build_model() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(784,), name="pixels"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(784, activation="sigmoid"),
        ],
        name="mnist_autoencoder",
    )
    # A loss object, not the string "mse": Keras 3 saves that string as the
    # function keras.metrics.mse, which load_model() cannot read back from .h5.
    model.compile(optimizer="adam", loss=keras.losses.MeanSquaredError())
    return model


def _train(epochs: int, limit: int | None, seed: int, verbose: int = 0):
    keras.utils.set_random_seed(seed)
    (x_train, _), (x_test, _) = load_mnist(limit=limit, seed=seed)
    model = build_model()
    model.fit(x_train, x_train, epochs=epochs, batch_size=32, verbose=verbose)
    loss = model.evaluate(x_test, x_test, verbose=0)
    instances = [[round(float(v), 4) for v in row] for row in x_test[:3]]
    return model, instances, {"loss": loss}


def train(*, epochs: int = DEFAULT_EPOCHS, limit: int | None = None, seed: int = 0):
    """Train in-process; return (model, first 3 test instances as request-ready lists)."""
    model, instances, _ = _train(epochs, limit, seed)
    return model, instances


def main(argv=None) -> None:
    args = parse_args("autoencoder", DEFAULT_EPOCHS, "Train the MNIST autoencoder example.", argv)
    model, instances, metrics = _train(args.epochs, args.limit, args.seed, verbose=2)
    # A reconstruction has no accuracy; mean squared error per pixel is the measure.
    print(f"test loss (mse) {metrics['loss']:.4f}")
    for path in save_outputs(model, instances, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
