"""Offline datasets for the example models.

Nothing here touches the network: the examples must run in CI and on air-gapped
machines.  MNIST comes from the Keras cache when someone has already downloaded
it, otherwise from scikit-learn's bundled 8x8 digits upscaled to MNIST's shape.
The text corpus is generated, because no text dataset ships offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KERAS_MNIST_CACHE = Path("~/.keras/datasets/mnist.npz")


def _mnist_cache() -> Path:
    # Expanded on every call so a changed HOME (tests, containers) is honoured.
    return KERAS_MNIST_CACHE.expanduser()


def mnist_source() -> str:
    """Which source `load_mnist` reads: "keras-cache" or "sklearn-digits"."""
    return "keras-cache" if _mnist_cache().is_file() else "sklearn-digits"


def _digits_as_mnist(seed: int):
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8 -> 28 pixels with linear interpolation; deterministic and close enough
    # to MNIST that the same models and request payloads apply.
    images = zoom(digits.images / 16.0, (1, 3.5, 3.5), order=1)
    x = np.clip(images, 0.0, 1.0).reshape(len(images), 784).astype(np.float32)
    y = digits.target.astype(np.int64)

    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.8 * len(x))
    train, test = order[:n_train], order[n_train:]
    return (x[train], y[train]), (x[test], y[test])


def _keras_mnist():
    with np.load(_mnist_cache()) as data:
        def prep(images):
            return (images.reshape(len(images), 784) / 255.0).astype(np.float32)

        return (
            (prep(data["x_train"]), data["y_train"].astype(np.int64)),
            (prep(data["x_test"]), data["y_test"].astype(np.int64)),
        )


def load_mnist(limit: int | None = None, seed: int = 0):
    """Return ((x_train, y_train), (x_test, y_test)).

    x is float32 [N, 784] in [0, 1], y is int64 in 0..9.  `limit` caps the
    training samples and the test samples to max(limit // 4, 16).  `seed` only
    affects the digits fallback's train/test split; the Keras cache keeps
    MNIST's official split.
    """
    if mnist_source() == "keras-cache":
        (x_train, y_train), (x_test, y_test) = _keras_mnist()
    else:
        (x_train, y_train), (x_test, y_test) = _digits_as_mnist(seed)
    if limit is not None:
        n_test = max(limit // 4, 16)
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    return (x_train, y_train), (x_test, y_test)


TOPIC_WORDS = {
    "sports": "goal match team player coach league score referee stadium season tournament striker keeper trophy fans",
    "cooking": "recipe oven garlic butter simmer flour pasta sauce bake chef onion spice roast kitchen dough",
    "space": "orbit rocket planet galaxy astronaut telescope comet lunar nebula satellite launch gravity asteroid crater cosmos",
    "finance": "stock market bond investor dividend interest bank loan equity inflation budget profit revenue shares portfolio",
    "music": "guitar melody chord album concert drummer lyrics tempo violin orchestra singer rhythm piano band chorus",
    "weather": "rain storm forecast cloud thunder humidity snow wind drizzle sunny frost hail temperature breeze hurricane",
    "medicine": "doctor patient vaccine clinic symptom surgery nurse dose therapy diagnosis fever hospital tablet virus recovery",
    "computing": "server compiler kernel database python network cache algorithm laptop software debug memory cluster script protocol",
    "travel": "flight hotel passport airport luggage beach ticket journey tourist museum cruise visa itinerary hostel map",
    "gardening": "soil seed compost tulip prune shovel hedge greenhouse weed bloom fertilizer sprout orchard mulch lawn",
}
FILLER_WORDS = (
    "the a an and or but of to in on at for with from by about is was are were "
    "be been this that these those it they we you very really just also then "
    "today yesterday often some many"
).split()
TOPICS = list(TOPIC_WORDS)


def load_topics(n_samples: int = 2000, seed: int = 0):
    """Return ((texts_train, y_train), (texts_test, y_test)), split 80/20.

    Each text is 5-30 words: words of its topic, shared fillers and a little
    noise from other topics, so the classifier has to find the signal rather
    than key off a single token or the sentence length.
    """
    rng = np.random.default_rng(seed)
    vocab = [TOPIC_WORDS[t].split() for t in TOPICS]
    texts, labels = [], []
    for _ in range(n_samples):
        label = int(rng.integers(len(TOPICS)))
        length = int(rng.integers(5, 31))
        kinds = rng.choice(3, size=length, p=[0.35, 0.05, 0.60])  # topic, noise, filler
        kinds[rng.integers(length)] = 0  # every text carries at least one topic word
        words = []
        for kind in kinds:
            if kind == 0:
                words.append(rng.choice(vocab[label]))
            elif kind == 1:
                other = (label + 1 + int(rng.integers(len(TOPICS) - 1))) % len(TOPICS)
                words.append(rng.choice(vocab[other]))
            else:
                words.append(rng.choice(FILLER_WORDS))
        texts.append(" ".join(str(w) for w in words))
        labels.append(label)

    y = np.array(labels, dtype=np.int64)
    n_train = int(0.8 * n_samples)
    return (texts[:n_train], y[:n_train]), (texts[n_train:], y[n_train:])
