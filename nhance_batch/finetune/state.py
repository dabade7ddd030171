"""The resumable training state: generator, discriminator, both optimisers' moments, the step
and the settings it was made with, as one ``.npz`` object written whole (never half-written)
through the storage layer. The random state needs no saving: batches are a function of the
seed and the step (:mod:`nhance_batch.finetune.patches`)."""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

STATE_DIR = "_train"
STATE_FILE = "state.npz"


class StateError(ValueError):
    """A saved state that does not fit this run (other data or settings) or is damaged."""


@dataclass
class TrainState:
    step: int
    generator: list[np.ndarray]
    discriminator: list[np.ndarray]
    g_opt: dict[str, Any]
    d_opt: dict[str, Any]
    settings: dict[str, Any]        # what must match for a resume
    history: list[dict[str, Any]]   # validation metrics along the way
    starts: list[int] = dataclasses.field(default_factory=list)  # the step each run began at

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        for prefix, params in (("g", self.generator), ("d", self.discriminator)):
            for i, a in enumerate(params):
                arrays[f"{prefix}{i}"] = np.asarray(a)
        for prefix, opt in (("go", self.g_opt), ("do", self.d_opt)):
            arrays[f"{prefix}_t"] = np.asarray(opt["t"])
            for i, (m, v) in enumerate(zip(opt["m"], opt["v"])):
                arrays[f"{prefix}_m{i}"] = np.asarray(m)
                arrays[f"{prefix}_v{i}"] = np.asarray(v)
        meta = {"step": self.step, "settings": self.settings, "history": self.history,
                "starts": self.starts,
                "n_g": len(self.generator), "n_d": len(self.discriminator)}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrainState":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                g = [z[f"g{i}"] for i in range(meta["n_g"])]
                d = [z[f"d{i}"] for i in range(meta["n_d"])]
                opts = []
                for prefix, n in (("go", meta["n_g"]), ("do", meta["n_d"])):
                    opts.append({"t": z[f"{prefix}_t"],
                                 "m": [z[f"{prefix}_m{i}"] for i in range(n)],
                                 "v": [z[f"{prefix}_v{i}"] for i in range(n)]})
        except (KeyError, ValueError, OSError, json.JSONDecodeError) as exc:
            raise StateError(f"damaged training state ({exc})") from exc
        return cls(int(meta["step"]), g, d, opts[0], opts[1], meta["settings"],
                   meta.get("history", []), list(meta.get("starts", [])))


def state_url(out: str) -> str:
    from nhance_batch import storage

    return storage.join(out, STATE_DIR, STATE_FILE)


def save_state(out: str, state: TrainState,
               storage_options: Mapping[str, Any] | None = None) -> None:
    from nhance_batch import storage

    storage.write_bytes(state_url(out), state.to_bytes(), storage_options)


def load_state(out: str, storage_options: Mapping[str, Any] | None = None) -> TrainState | None:
    from nhance_batch import storage

    url = state_url(out)
    if not storage.exists(url, storage_options):
        return None
    return TrainState.from_bytes(storage.read_bytes(url, storage_options))


def remove_state(out: str, storage_options: Mapping[str, Any] | None = None) -> None:
    from nhance_batch import storage

    url = state_url(out)
    if storage.exists(url, storage_options):
        storage.remove(url, storage_options)
    if storage.is_local_url(url):  # object stores have no empty folders to leave behind
        import contextlib
        import os

        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(storage.local_path(url)))


def mismatches(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings that differ between a saved state and this run (``steps`` may grow)."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            out.append(f"{key}: saved {saved.get(key)!r}, now {current.get(key)!r}")
    return out
