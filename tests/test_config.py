import pytest
from tp_helpers import REPO

from pipeline.config import Config, from_dict, load_config
from pipeline.errors import ConfigError


def test_demo_config_loads():
    cfg = load_config(REPO / "models" / "demo.yaml")
    assert isinstance(cfg, Config)
    assert cfg.data.source == "synthetic"


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        from_dict({"model": {"alpha": 0.5, "alhpa": 1}})
    msg = str(e.value)
    assert "model.alhpa" in msg and "alpha" in msg and "first_stride" in msg
    assert "\n" not in msg


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match="unknown config key modle"):
        from_dict({"modle": {}})


@pytest.mark.parametrize("raw, match", [
    ({"model": {"alpha": 1.5}}, "model.alpha"),
    ({"model": {"alpha": "wide"}}, "model.alpha must be a number"),
    ({"train": {"epochs": 2.5}}, "train.epochs must be an integer"),
    ({"model": {"arch": "resnet"}}, "model.arch must be one of"),
    ({"preprocess": {"channels": 2}}, "preprocess.channels"),
    ({"preprocess": {"height": 16}}, "preprocess.height"),
    ({"data": {"source": "npz"}}, "data.path is required"),
    ({"train": {"augment": {"flip": "maybe"}}}, "train.augment.flip must be true or false"),
])
def test_bad_values_are_named(raw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(raw)


def test_overrides_and_yaml_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  alpha: 0.5\n")
    cfg = load_config(p, ["model.alpha=0.75", "train.epochs=3", "model.weights="])
    assert cfg.model.alpha == 0.75 and cfg.train.epochs == 3 and cfg.model.weights is None
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(p, ["nonsense"])
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
