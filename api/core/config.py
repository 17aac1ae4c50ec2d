"""Service configuration from ``IGRT_*`` environment variables (pydantic-settings).

Every setting has an embedded default, so ``igrt serve`` runs with nothing configured: a SQLite
database and a local file store under one data directory (``./data``).

==============================  ==========================================================
``IGRT_DATA_DIR``               data directory (SQLite file, file store, first-run token)
``IGRT_DATABASE_URL``           SQLAlchemy URL; ``sqlite:///<data_dir>/igrt.sqlite3`` by
                                default; ``postgresql://...`` uses psycopg 3
``IGRT_REDIS_URL``              ``redis://host:6379/0``: several replicas on one PostgreSQL
                                share the live monitor through Redis pub/sub; unset (one
                                process) by default
``IGRT_MAX_UPLOAD_BYTES``       largest accepted upload (413 above)
``IGRT_MAX_FRAMES``             most frames in one fluoroscopy upload
``IGRT_MAX_IMAGE_ROWS``         largest frame height, pixels
``IGRT_MAX_IMAGE_COLUMNS``      largest frame width, pixels
``IGRT_MAX_DECODED_BYTES``      largest decoded pixel data (guards decompression bombs)
``IGRT_MAX_VOLUME_VOXELS``      most voxels in one planning CT or CBCT upload
``IGRT_REGISTRATION_WORKERS``   registration jobs run at the same time (thread pool)
``IGRT_STREAM_MAX_FRAME_BYTES``  largest frame on the real-time stream (8 MiB: 2048 x 2048
                                uint16)
``IGRT_TOKEN_PEPPER``           secret mixed into every stored token hash; generated once
                                into ``<data_dir>/token-pepper`` when unset
``IGRT_DEMO_DATA``              create a demo patient on first start (``true``): simulated
                                fluoroscopy of the phantom (``IGRT_DEMO_DURATION_S`` 30,
                                ``IGRT_DEMO_FPS`` 2, ``IGRT_DEMO_BINNING`` 2) and its
                                motion assessment; a few seconds, once
``IGRT_FIRST_RUN_TOKEN``        write a therapist token to ``<data_dir>/first-run-token.txt``
                                when no token exists (``true``)
``IGRT_METRICS_PUBLIC``         serve ``/metrics`` without a token (``false``)
``IGRT_WEB_SESSION_HOURS``      how long a review-page sign-in lasts (12 h: one shift)
``IGRT_WEB_SESSION_IDLE_MINUTES``  a sign-in unused this long ends (30 min: a console left
                                signed in does not stay open to the next person)
``IGRT_COOKIE_SECURE``          mark the sign-in cookie ``Secure`` (``false``; set ``true``
                                behind HTTPS, which every clinical deployment should be)
``IGRT_DEMO_REGISTRATION``      add a CBCT-to-CT registration to the demo patient (``true``)
``IGRT_API_DOCS``               serve Swagger UI at ``/docs`` and ReDoc at ``/redoc``
                                (``false``: both load scripts from a CDN, which a closed
                                hospital network blocks and which would run on the sign-in
                                cookie's origin); ``/openapi.json`` is always served
``IGRT_LOG_LEVEL``              ``INFO`` by default
``IGRT_LOG_FORMAT``             ``json`` (one object per line) or ``text``
==============================  ==========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["API_PREFIX", "Settings"]

API_PREFIX = "/api/v1"
"""Every resource route lives under this prefix; health, readiness and metrics do not."""

_MIB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="IGRT_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("data"), description="Data directory.")
    database_url: str = Field(
        default="", description="SQLAlchemy database URL; SQLite in data_dir when empty."
    )
    redis_url: str = Field(
        default="", description="Redis for several replicas (live monitor); none when empty."
    )
    max_upload_bytes: int = Field(default=512 * _MIB, gt=0)
    max_frames: int = Field(default=3000, gt=0)
    max_image_rows: int = Field(default=4096, gt=0)
    max_image_columns: int = Field(default=4096, gt=0)
    max_decoded_bytes: int = Field(default=2048 * _MIB, gt=0)
    max_volume_voxels: int = Field(default=512 * 512 * 1024, gt=0)
    registration_workers: int = Field(default=2, ge=1, le=16)
    stream_max_frame_bytes: int = Field(default=8 * _MIB, gt=0)
    token_pepper: SecretStr | None = None
    demo_data: bool = True
    first_run_token: bool = True
    # 30 s at 2 fps: enough breathing cycles (>= 5) for the demo to reach a decision.
    demo_duration_s: float = Field(default=30.0, gt=0, le=120)
    demo_fps: float = Field(default=2.0, gt=0, le=30)
    demo_binning: int = Field(default=2, ge=1, le=4)
    metrics_public: bool = False
    web_session_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    web_session_idle_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    cookie_secure: bool = False
    demo_registration: bool = True
    api_docs: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("demo_binning")
    @classmethod
    def _binning_factor(cls, value: int) -> int:
        if value not in (1, 2, 4):
            raise ValueError("demo_binning must be 1, 2 or 4")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and value.partition("://")[0] not in ("redis", "rediss", "unix"):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        data_dir = self.data_dir.expanduser().resolve()
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'igrt.sqlite3'}")
        return self

    @property
    def store_dir(self) -> Path:
        """Root of the content-addressed file store."""
        return self.data_dir / "files"

    @property
    def temp_dir(self) -> Path:
        """Scratch space on the same file system as the store (for atomic renames)."""
        return self.data_dir / "tmp"

    @property
    def first_run_token_path(self) -> Path:
        """Where the first-run therapist token is written (mode 0600)."""
        return self.data_dir / "first-run-token.txt"

    @property
    def pepper_path(self) -> Path:
        """Where a generated token pepper is kept when ``IGRT_TOKEN_PEPPER`` is unset."""
        return self.data_dir / "token-pepper"
