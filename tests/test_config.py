"""Config: YAML into frozen typed objects; unknown keys and impossible values are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.features.config import TrainConfig, config_from_dict, load_config
from leadscore.features.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_demo_config_equals_the_defaults():
    assert load_config(REPO / "configs" / "demo.yaml") == TrainConfig()


@pytest.mark.parametrize("values, message", [
    ({"features": {"as_of_dayz": 7}}, r"config.features: unknown key \['as_of_dayz'\]"),
    ({"modle": {}}, r"config: unknown key \['modle'\]"),
    ({"features": {"label_window_days": 0}}, "label_window_days must be > 0"),
    ({"bands": {"cutoffs": [60, 40]}}, "cutoffs must be increasing"),
    ({"bands": {"names": ["a", "b", "c"], "cutoffs": [10]}}, "one value per band"),
    ({"model": {"calibration": "platt"}}, "calibration must be 'auto', 'sigmoid', 'isotonic' or 'none'"),
    ({"split": {"test_fraction": 0.5, "calibration_fraction": 0.4}}, "leave >= 20%"),
    ({"features": "seven"}, "expected a mapping"),
])
def test_bad_config_values(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)


def test_lists_become_tuples_and_ints_become_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("features:\n  windows: [3, 10]\n  half_life_days: 7\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.features.windows == (3, 10) and cfg.features.half_life_days == 7.0
    assert isinstance(cfg.features.half_life_days, float)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
