"""Typed, validated settings of the web service: the server's own, and a job's as submitted.

Both are built once at the edge (``serve``'s options, the job form or JSON body) and frozen.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MAX_UPLOAD_BYTES = 4 << 30
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerConfig(BaseModel):
    """How one ``nhance-batch serve`` runs.

    Attributes:
        data: the data folder; jobs live in ``data/jobs/<id>/`` (``input/``, ``output/``).
        token: the secret every request must present (bearer header or cookie).
        host, port: where to listen.
        address: the Ray cluster jobs run on; None starts an embedded local Ray per job.
        executor: ``ray`` (the normal path) or ``sequential`` (everything in the server process).
        max_upload_bytes: the largest upload accepted (all files of one request together).
        allow_input: server-side inputs (folders, files, bucket URLs) a job may name; none:
            server-side inputs are refused.
        workers: enhancer actors per job (0: the executor's default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Path
    token: str = Field(min_length=1, repr=False)
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    address: str | None = None
    executor: Literal["ray", "sequential"] = "ray"
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1)
    allow_input: tuple[str, ...] = ()
    workers: int = Field(default=0, ge=0)

    @field_validator("data")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class JobSettings(BaseModel):
    """A job's processing settings, as the form or the JSON body gives them.

    Attributes:
        model: registry model name (``iphone``, ``blackberry``, ``sony``).
        temporal_radius: frames each side over which the colour gain is smoothed (0: off).
        lossless: encode losslessly (FFV1); such outputs are shown through previews.
        crf: constant rate factor of the lossy encoder (None: the encoder default).
        codec: ``match`` (None: the source's codec family), ``auto`` or an encoder name.
        strict: a damaged recording fails instead of keeping the frames that decode.
        previews: also write a browser-playable preview of each output.
        chunk_frames: frames per chunk (0: sized to the video).
        hdr: ``keep`` HDR sources HDR, or write their SDR BT.709 rendition (``sdr``).
        strength: how much of the enhancement is kept, 0 (the input) to 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "iphone"
    temporal_radius: int = Field(default=3, ge=0, le=64)
    lossless: bool = False
    crf: int | None = Field(default=None, ge=0, le=63)
    codec: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    strict: bool = False
    previews: bool = False
    chunk_frames: int = Field(default=0, ge=0, le=100_000)
    hdr: Literal["keep", "sdr"] = "keep"
    strength: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from nhance_batch.model.registry import load_registry

        known = load_registry()[1]
        if value not in known:
            raise ValueError(f"unknown model {value!r}; known: {', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _lossless_has_no_crf(self) -> "JobSettings":
        if self.lossless and (self.crf is not None or self.codec is not None):
            raise ValueError("lossless cannot be combined with crf or codec")
        return self

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> "JobSettings":
        """From multipart form fields: empty values mean "not given"; checkboxes send on/true."""
        given = {k: v for k, v in fields.items() if k in cls.model_fields and v.strip() != ""}
        return cls.model_validate(given)

    def run_config(self, input_spec: str, output: str, server: ServerConfig,
                   storage_options: dict | None = None):
        """The library's RunConfig for this job (through the one builder the CLI and job specs
        use, :func:`nhance_batch.config.run_config`)."""
        from nhance_batch.config import run_config

        return run_config(input_spec, output, model=self.model, chunk_frames=self.chunk_frames,
                          temporal_radius=self.temporal_radius, lossless=self.lossless,
                          crf=self.crf, codec=self.codec, strict=self.strict,
                          previews=self.previews, address=server.address,
                          workers=server.workers, hdr=self.hdr, strength=self.strength,
                          storage_options=storage_options)


class JobRequest(JobSettings):
    """The JSON form of ``POST /api/jobs``: a server-side input plus the same settings."""

    input: str = Field(min_length=1)
