"""Per-user settings (studio/settings.py): the matte path's name and its old alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio import layout, settings
from studio.storage import open_storage


def test_the_matte_path_is_mode_matte_and_birefnet_is_its_old_name(tmp_path: Path) -> None:
    assert settings.validate({"mode": "matte"})["mode"] == "matte"
    assert settings.validate({"mode": "birefnet"})["mode"] == "matte"
    storage = open_storage(str(tmp_path))
    storage.write(layout.settings("alice"), json.dumps({"mode": "birefnet", "min_area": 5}).encode())
    assert settings.load(storage, "alice")["mode"] == "matte"  # stored before the rename: still the matte path
    settings.save(storage, "alice", {"mode": "birefnet"})
    assert json.loads(storage.read(layout.settings("alice")))["mode"] == "matte"  # stored normalised


def test_soft_edges_is_a_switch_and_off_by_default() -> None:
    assert settings.DEFAULTS["soft_edges"] is False
    assert settings.validate({"soft_edges": True})["soft_edges"] is True
    assert settings.validate({"soft_edges": "false"})["soft_edges"] is False  # as the settings form sends it
    for bad in ("yes", 1, None):
        with pytest.raises(settings.InvalidSettings) as refused:
            settings.validate({"soft_edges": bad})
        assert "soft_edges" in refused.value.errors
