"""Per-user settings (docs/architecture.md "Settings"): defaults, validation, storage.

sam_model takes its choices from studio.modelfiles; its default, "deployment", means whatever SAM model the
deployment loads (SAM_MODEL, else the CPU rule), so it never names weights that may be absent.
"""

from __future__ import annotations

import contextlib

from studio import layout, modelfiles
from studio.storage import NotFound, Storage

DEFAULTS: dict[str, object] = {
    "sam_model": modelfiles.DEPLOYMENT,
    "points_per_side": 32,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "crop_n_layers": 1,
    "mode": "auto",
    "min_area": 256,
    "max_clippings": 50,
    "soft_edges": True,
}
CHOICES = {"sam_model": modelfiles.SAM_SETTING_CHOICES, "mode": ("auto", "sam", "matte")}
# Old names still accepted, stored as the new one: "birefnet" named the matte path whatever MATTE_MODEL is.
ALIASES = {"mode": {"birefnet": "matte"}}
# Settings files written before sam_model: "model_type", which every file held, its old default (vit_l)
# included; that default was nobody's choice, so it reads as the deployment's model.
OLD_SAM_KEY, OLD_SAM_DEFAULT = "model_type", "vit_l"
INT_RANGES = {
    "points_per_side": (8, 128),
    "crop_n_layers": (0, 3),
    "min_area": (0, 100_000_000),
    "max_clippings": (1, 500),
}
FLOAT_RANGES = {"pred_iou_thresh": (0.5, 0.99), "stability_score_thresh": (0.5, 0.99)}
SWITCHES = ("soft_edges",)  # true or false (the settings form sends "true" / "false")


class InvalidSettings(ValueError):
    """The message names every refused field and why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def validate(changes: object, base: dict | None = None) -> dict[str, object]:
    """base (default: DEFAULTS) updated with changes, or InvalidSettings. Unknown keys are refused."""
    if not isinstance(changes, dict):
        raise InvalidSettings({"settings": "must be a JSON object"})
    out = dict(base or DEFAULTS)
    errors: dict[str, str] = {}
    for key, value in changes.items():
        if key in CHOICES:
            value = ALIASES.get(key, {}).get(value, value) if isinstance(value, str) else value
            if value not in CHOICES[key]:
                errors[key] = f"must be one of {', '.join(CHOICES[key])}"
                continue
        elif key in INT_RANGES:
            lo, hi = INT_RANGES[key]
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                errors[key] = f"must be a whole number from {lo} to {hi}"
                continue
        elif key in FLOAT_RANGES:
            least, most = FLOAT_RANGES[key]
            try:
                number = float(value) if not isinstance(value, bool) else None
            except (TypeError, ValueError, OverflowError):  # OverflowError: a huge JSON integer
                number = None
            if number is None or not least <= number <= most:
                errors[key] = f"must be a number from {least} to {most}"
                continue
            value = number
        elif key in SWITCHES:
            value = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
            if not isinstance(value, bool):
                errors[key] = "must be true or false"
                continue
        else:
            errors[str(key)[:64]] = "unknown setting"
            continue
        out[key] = value
    if errors:
        raise InvalidSettings(errors)
    return out


def load(storage: Storage, user: str) -> dict[str, object]:
    """The user's settings; defaults for anything missing or no longer valid."""
    try:
        stored = storage.read_json(layout.settings(user))
    except (NotFound, ValueError):
        return dict(DEFAULTS)
    if not isinstance(stored, dict):
        return dict(DEFAULTS)
    if OLD_SAM_KEY in stored:
        old = stored.pop(OLD_SAM_KEY)
        stored.setdefault("sam_model", modelfiles.DEPLOYMENT if old == OLD_SAM_DEFAULT else old)
    out = dict(DEFAULTS)
    for key, value in stored.items():
        with contextlib.suppress(InvalidSettings):
            out.update(validate({key: value}, out))
    return out


def save(storage: Storage, user: str, changes: object) -> dict[str, object]:
    """Validate changes against the stored settings and store the result (or raise)."""
    merged = validate(changes, load(storage, user))
    storage.write_json(layout.settings(user), merged, indent=2)
    return merged
