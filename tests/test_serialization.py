"""A model using every layer and activation function loads in a fresh process."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

import keras_actkit as ak

LOADER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import keras_actkit as ak

    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    x, expected = np.load(sys.argv[2]), np.load(sys.argv[3])
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
    kinds = {type(layer).__name__: type(layer).__module__ for layer in model.layers}
    assert kinds["LeakyReLU6"].startswith("keras_actkit"), kinds
    assert kinds["PReLU"].startswith("keras_actkit"), kinds
    assert kinds["HardSwish"].startswith("keras_actkit"), kinds
    assert model.get_layer("fused_leaky").activation is ak.activations.leaky_relu6
    assert model.get_layer("fused_hswish").activation is ak.activations.hard_swish
    print("loaded-ok")
    """
)


def build_model():
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, activation=ak.activations.leaky_relu6, name="fused_leaky")(inputs)
    h = keras.layers.Dense(16, activation=ak.activations.hard_swish, name="fused_hswish")(h)
    h = ak.layers.LeakyReLU6(negative_slope=0.2)(keras.layers.Dense(16)(h))
    h = ak.layers.HardSwish()(keras.layers.Dense(16)(h))
    h = keras.layers.Reshape((4, 4))(h)
    h = ak.layers.PReLU(shared_axes=[-2], alpha_initializer=keras.initializers.RandomUniform(0, 0.5))(h)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    return keras.Model(inputs, outputs)


def test_keras_file_loads_in_fresh_process_with_safe_mode(tmp_path):
    model = build_model()
    x = np.random.default_rng(0).normal(0, 3, size=(16, 8)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded-ok" in result.stdout
