"""Topic classifier: an LSTM over word ids, trained on a generated 10-topic corpus.

The served model takes token ids (int64, any length, 0 = padding) per instance
(input "tokens") and returns 10 class probabilities.  Tokenisation happens
outside the model: the vocabulary is saved as <model>.vocab.json, a list of
tokens whose position is the id (0 is padding, 1 is "[UNK]"); lower-case the
text, strip punctuation, split on whitespace and look each word up.
Train, deploy and query it with:

    python examples/train_lstm.py
    cloudml deploy build/models/lstm.h5 --name topics-lstm
    cloudml predict topics-lstm --file build/models/lstm.sample.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running the script puts this folder on sys.path already; importing it as
# `examples.train_lstm` does not, and the sibling modules are plain modules.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from _common import parse_args, save_outputs  # noqa: E402
from seed_data import load_topics  # noqa: E402

DEFAULT_EPOCHS = 5
VOCAB_SIZE = 10000


def build_model() -> keras.Model:
    # Sequential, not functional: a functional model records the padding mask
    # as a NotEqual op that Keras 3 writes into .h5 files but cannot load back.
    model = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int64", name="tokens"),
            # mask_zero makes padding invisible to the LSTM, so an unpadded request
            # gets the same answer as the same text padded inside a training batch.
            keras.layers.Embedding(VOCAB_SIZE, 64, mask_zero=True),
            keras.layers.LSTM(64),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="topics_lstm",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _train(epochs: int, limit: int | None, seed: int, verbose: int = 0):
    keras.utils.set_random_seed(seed)
    (texts_train, y_train), (texts_test, y_test) = load_topics(seed=seed)
    if limit is not None:
        texts_train, y_train = texts_train[:limit], y_train[:limit]
        n_test = max(limit // 4, 16)
        texts_test, y_test = texts_test[:n_test], y_test[:n_test]

    # Kept out of the model so the served signature is plain int64 ids, which
    # every serving stack accepts; TextVectorization replaces the removed Tokenizer.
    vectorizer = keras.layers.TextVectorization(max_tokens=VOCAB_SIZE, output_mode="int")
    vectorizer.adapt(texts_train)
    x_train = vectorizer(texts_train).numpy().astype(np.int64)
    x_test = vectorizer(texts_test).numpy().astype(np.int64)

    model = build_model()
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    # Ids are never 0 except as padding, so dropping zeros recovers each text's length.
    instances = [[int(t) for t in row if t != 0] for row in x_test[:3]]
    vocabulary = [str(t) for t in vectorizer.get_vocabulary()]
    return model, instances, {"loss": loss, "accuracy": accuracy}, vocabulary


def train(*, epochs: int = DEFAULT_EPOCHS, limit: int | None = None, seed: int = 0):
    """Train in-process; return (model, first 3 test instances as lists of token ids)."""
    model, instances, _, _ = _train(epochs, limit, seed)
    return model, instances


def main(argv=None) -> None:
    args = parse_args("lstm", DEFAULT_EPOCHS, "Train the topic-classification LSTM example.", argv)
    model, instances, metrics, vocabulary = _train(args.epochs, args.limit, args.seed, verbose=2)
    print(f"test loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}")
    for path in save_outputs(model, instances, args.out, extra={".vocab.json": vocabulary}):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
