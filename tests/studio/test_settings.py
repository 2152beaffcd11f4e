"""Per-user settings (studio/settings.py): the matte path's name and its old alias; the SAM model's name, its
choices and default from studio.modelfiles, and settings files written before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio import layout, modelfiles, settings
from studio.storage import open_storage


def test_the_matte_path_is_mode_matte_and_birefnet_is_its_old_name(tmp_path: Path) -> None:
    assert settings.validate({"mode": "matte"})["mode"] == "matte"
    assert settings.validate({"mode": "birefnet"})["mode"] == "matte"
    storage = open_storage(str(tmp_path))
    storage.write(layout.settings("alice"), json.dumps({"mode": "birefnet", "min_area": 5}).encode())
    assert settings.load(storage, "alice")["mode"] == "matte"  # stored before the rename: still the matte path
    settings.save(storage, "alice", {"mode": "birefnet"})
    assert json.loads(storage.read(layout.settings("alice")))["mode"] == "matte"  # stored normalised


def test_the_sam_model_defaults_to_the_deployments_and_offers_every_sam_model() -> None:
    assert settings.DEFAULTS["sam_model"] == modelfiles.DEPLOYMENT == "deployment"
    assert settings.CHOICES["sam_model"] == ("deployment", *modelfiles.SAM_MODELS)
    assert settings.validate({"sam_model": "vit_h"})["sam_model"] == "vit_h"
    assert "model_type" not in settings.DEFAULTS


def test_an_old_settings_file_with_model_type_is_read_never_refused(tmp_path: Path) -> None:
    """Files written before sam_model hold "model_type" (every one: its old default vit_l included, which was
    nobody's choice). They load, the old default as the deployment's model, a real choice kept; a save
    writes the new name only."""
    storage = open_storage(str(tmp_path))
    old = {**{k: v for k, v in settings.DEFAULTS.items() if k != "sam_model"}, "points_per_side": 16}
    for user, model_type, expected in (("alice", "vit_l", "deployment"), ("bob", "vit_h", "vit_h")):
        storage.write(layout.settings(user), json.dumps({**old, "model_type": model_type}).encode())
        loaded = settings.load(storage, user)
        assert loaded == {**settings.DEFAULTS, "points_per_side": 16, "sam_model": expected}
        settings.save(storage, user, {"min_area": 10})
        stored = json.loads(storage.read(layout.settings(user)))
        assert stored["sam_model"] == expected and "model_type" not in stored
    storage.write(layout.settings("carol"), json.dumps({"model_type": "vit_x", "min_area": 7}).encode())
    assert settings.load(storage, "carol") == {**settings.DEFAULTS, "min_area": 7}  # an unknown model: the default


def test_soft_edges_is_a_switch_and_on_by_default() -> None:
    assert settings.DEFAULTS["soft_edges"] is True
    assert settings.validate({"soft_edges": True})["soft_edges"] is True
    assert settings.validate({"soft_edges": "false"})["soft_edges"] is False  # as the settings form sends it
    for bad in ("yes", 1, None):
        with pytest.raises(settings.InvalidSettings) as refused:
            settings.validate({"soft_edges": bad})
        assert "soft_edges" in refused.value.errors
