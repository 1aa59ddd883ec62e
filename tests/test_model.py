import numpy as np
import pytest

from pipeline.config import ModelConfig
from pipeline.errors import ModelError
from pipeline.model import build_model, export_copy
from pipeline.profile import profile_keras

# MobileNet paper, Tables 6 and 7 (MobileNet v1, 1000 classes): MACs (M) and params (M).
PAPER = [(1.0, 224, 569, 4.2), (0.75, 224, 325, 2.6), (0.5, 224, 149, 1.3),
         (0.25, 224, 41, 0.5), (1.0, 192, 418, None), (1.0, 160, 290, None),
         (1.0, 128, 186, None)]


@pytest.mark.parametrize("alpha, res, macs_m, params_m", PAPER)
def test_mobilenet_v1_matches_paper_table(alpha, res, macs_m, params_m):
    m = build_model(ModelConfig(arch="mobilenet_v1", alpha=alpha, first_stride=2),
                    (res, res, 3), 1000)
    p = profile_keras(m)
    assert abs(p["macs"] / 1e6 - macs_m) / macs_m < 0.01, p
    if params_m is not None:  # the paper rounds to 0.1 M, so compare at that precision
        assert round(p["params"] / 1e6, 1) == params_m, p


def test_v2_shapes_gray_nonsquare_and_residuals():
    m = build_model(ModelConfig(arch="mobilenet_v2", alpha=0.35, head_channels=128),
                    (48, 64, 1), 7)
    assert m.output_shape == (None, 7)
    assert any(layer.name.endswith("_add") for layer in m.layers)
    y = m.predict(np.zeros((2, 48, 64, 1), np.float32), verbose=0)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_export_copy_has_batch_one_and_same_outputs():
    cfg = ModelConfig(alpha=0.25, blocks=3)
    m = build_model(cfg, (32, 32, 3), 3)
    m1 = export_copy(m, cfg, 3)
    assert m1.input_shape == (1, 32, 32, 3)
    x = np.random.default_rng(0).random((1, 32, 32, 3), np.float32)
    np.testing.assert_allclose(m.predict(x, verbose=0), m1.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("kw, shape, match", [
    ({"alpha": 0.05}, (32, 32, 3), "alpha"),
    ({}, (16, 32, 3), "32..224"),
    ({}, (32, 32, 4), "channels"),
    ({"first_stride": 3}, (32, 32, 3), "first_stride"),
])
def test_bad_arguments_echo_the_value(kw, shape, match):
    with pytest.raises(ModelError, match=match):
        build_model(ModelConfig(**kw), shape, 3)


def test_local_imagenet_weights_file(tmp_path):
    import keras

    # A keras.applications weights file made here (random weights): nothing is downloaded.
    ref = keras.applications.MobileNet(input_shape=(64, 64, 3), alpha=0.25, include_top=False,
                                       weights=None)
    path = tmp_path / "mobilenet_0.25_no_top.weights.h5"
    ref.save_weights(path)
    m = build_model(ModelConfig(alpha=0.25, weights=str(path)), (64, 64, 3), 5)
    np.testing.assert_array_equal(m.get_layer("conv_pw_5").get_weights()[0],
                                  ref.get_layer("conv_pw_5").get_weights()[0])
    with pytest.raises(ModelError, match="3 input channels"):
        build_model(ModelConfig(alpha=0.25, weights=str(path)), (64, 64, 1), 5)
    with pytest.raises(ModelError, match="does not fit"):
        build_model(ModelConfig(alpha=0.5, weights=str(path)), (64, 64, 3), 5)
    with pytest.raises(ModelError, match="never downloaded"):
        build_model(ModelConfig(weights=str(tmp_path / "nope.h5")), (64, 64, 3), 5)
