"""A model with several named inputs, declared in an order that is not alphabetical: served
(batched, concurrently) it gives what Keras gives in-process, whichever order a request lists them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from test_serving_errors import start_serve, stop, wait_for_exit_or_ping

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_input_model(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(7)
    zeta = keras.Input(shape=(3,), name="zeta")
    alpha = keras.Input(shape=(3,), name="alpha")  # same shape: only the names tell them apart
    # Different weights per input, so swapping them would change every output.
    mixed = keras.layers.Concatenate()([keras.layers.Dense(4, name="from_zeta")(zeta), keras.layers.Dense(4, name="from_alpha")(alpha)])
    model = keras.Model(inputs=[zeta, alpha], outputs=keras.layers.Dense(2, name="out")(mixed))
    path = tmp_path_factory.mktemp("multi") / "two_inputs.keras"
    model.save(path)
    return path, model


def test_named_inputs_are_fed_to_the_right_tensors_batched_or_not(two_input_model, tmp_path):
    path, model = two_input_model
    rng = np.random.default_rng(3)
    zeta, alpha = rng.normal(size=(24, 3)).astype("float32"), rng.normal(size=(24, 3)).astype("float32")
    expected = np.asarray(model({"zeta": zeta, "alpha": alpha}))

    proc, url, log = start_serve(path, tmp_path)
    try:
        assert wait_for_exit_or_ping(proc, url, timeout=120) == 200, log.read_text()[-3000:]
        with httpx.Client(timeout=30, trust_env=False) as client:
            def one(i: int) -> list:
                # Every other request lists the inputs in the other order.
                instance = {"alpha": alpha[i].tolist(), "zeta": zeta[i].tolist()} if i % 2 else {"zeta": zeta[i].tolist(), "alpha": alpha[i].tolist()}
                response = client.post(url + "/invocations", json={"instances": [instance]})
                assert response.status_code == 200, response.text
                return response.json()["predictions"][0]

            with ThreadPoolExecutor(8) as pool:
                served = np.asarray(list(pool.map(one, range(len(zeta)))))
            columns = client.post(url + "/v1/models/two_inputs:predict",
                                  json={"inputs": {"alpha": alpha.tolist(), "zeta": zeta.tolist()}})
            assert columns.status_code == 200, columns.text
            metrics = client.get(url + "/metrics").text
    finally:
        stop(proc)
    assert np.allclose(served, expected, atol=1e-5)
    assert np.allclose(np.asarray(columns.json()["outputs"]), expected, atol=1e-5)
    assert "cloudml_batch_size_count" in metrics
