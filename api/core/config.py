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
``IGRT_MAX_JSON_BYTES``         largest body of every other route (64 KiB; frames: one frame)
``IGRT_MAX_FRAMES``             most frames in one fluoroscopy upload
``IGRT_MAX_IMAGE_ROWS``         largest frame height, pixels
``IGRT_MAX_IMAGE_COLUMNS``      largest frame width, pixels
``IGRT_MAX_DECODED_BYTES``      largest decoded pixel data (guards decompression bombs)
``IGRT_MAX_VOLUME_VOXELS``      most voxels in one planning CT or CBCT upload
``IGRT_REGISTRATION_IN_PROCESS``  run registration jobs in this process (``true``); with
                                ``false`` the process only queues them and ``igrt worker``
                                processes on the same database run them (replicas)
``IGRT_REGISTRATION_WORKERS``   registration jobs run at the same time (thread pool)
``IGRT_REGISTRATION_TIME_LIMIT_S``  a registration still running after this long is failed
                                with the reason (900 s; one takes seconds to a minute)
``IGRT_HEAVY_WORK_MAX_CONCURRENT``  uploads being decoded, assessments and registration jobs
                                running at once in this process (3; each peaks at about
                                2 x ``IGRT_MAX_DECODED_BYTES``, so the heavy-work peak is
                                about this many times that); more than
                                ``IGRT_REGISTRATION_WORKERS``, so uploads always find a slot
``IGRT_HEAVY_WORK_WAIT_S``      a request waits this long for a heavy-work slot, then gets 503
                                with ``Retry-After`` (10 s); registration jobs wait queued
``IGRT_REGISTRATION_MAX_ACTIVE_PER_TOKEN``  queued or running registration jobs one token may
                                have (4; one CBCT-to-CT per fraction, and a retry or two);
                                429 with ``Retry-After`` beyond
``IGRT_REGISTRATION_MAX_ACTIVE``  queued or running registration jobs in the whole service
                                (64); 503 with ``Retry-After`` beyond
``IGRT_JOB_LEASE_S``            a running job's claim lasts this long unless its worker
                                renews it (30 s, renewed every 10 s): a job whose worker
                                died is queued again (or failed) within about this long
``IGRT_REGISTRATION_MAX_ATTEMPTS``  runs of one registration job in all when its worker dies
                                under it (3): a job interrupted that many times is failed
                                with the reason; one past its time limit is never retried
``IGRT_STREAM_MAX_FRAME_BYTES``  largest frame on the real-time stream (8 MiB: 2048 x 2048
                                uint16)
``IGRT_STREAM_MAX_OPEN``        real-time streams (WebSocket and HTTP together) open at
                                once in this process (32; 429 or WebSocket close 1013)
``IGRT_STREAM_MAX_PER_TOKEN``   streams one token may hold open (16)
``IGRT_STREAM_SEARCH_THREADS``  frames that search the whole panel for the dome (a stream's
                                first, and after a loss) run on this many threads of their
                                own at a lower CPU priority (1), so that they never hold up
                                the frames of the streams already tracking (api.frame_lanes)
``IGRT_STREAM_IDLE_TIMEOUT_S``  a stream without a message or frame this long is closed (60)
``IGRT_MONITOR_MAX_OPEN``       live-monitor WebSockets open at once (64), and
``IGRT_MONITOR_MAX_PER_TOKEN``  per token (8)
``IGRT_CREDENTIAL_RECHECK_S``   open WebSockets re-check their token or sign-in this often
                                and close (1008) once it is revoked, expired or ended (2 s)
``IGRT_DB_POOL_SIZE``           database connections kept per process (10, plus as many
                                on demand); no request holds one while it waits on a client
``IGRT_DB_POOL_TIMEOUT_S``      wait for a free connection before answering 503 (10 s)
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
``IGRT_HSTS``                   send ``Strict-Transport-Security`` on every response
                                (``false``; HTTPS requests get it anyway); the Dockerfile
                                sets ``true``: the service is reached over TLS only
``IGRT_FIRST_RUN_TOKEN_TTL_S``  the first-run token file is deleted on the token's first
                                use or after this long (24 h), whichever comes first
``IGRT_DEMO_REGISTRATION``      add a CBCT-to-CT registration to the demo patient (``true``)
``IGRT_API_DOCS``               serve Swagger UI at ``/docs`` and ReDoc at ``/redoc``
                                (``false``: both load scripts from a CDN, which a closed
                                hospital network blocks and which would run on the sign-in
                                cookie's origin); ``/openapi.json`` is always served
``IGRT_PROTOCOL_FILE``          site motion protocol (TOML, :mod:`igrt.protocol_file`),
                                read once at start; unset: the built-in seed-derived one.
                                Its version and SHA-256 are stored with every result
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
    max_json_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * _MIB)
    max_frames: int = Field(default=3000, gt=0)
    max_image_rows: int = Field(default=4096, gt=0)
    max_image_columns: int = Field(default=4096, gt=0)
    max_decoded_bytes: int = Field(default=2048 * _MIB, gt=0)
    max_volume_voxels: int = Field(default=512 * 512 * 1024, gt=0)
    registration_in_process: bool = Field(
        default=True,
        description="Run registration jobs in this process; false leaves them to igrt worker.",
    )
    registration_workers: int = Field(default=2, ge=1, le=16)
    registration_time_limit_s: float = Field(default=900.0, gt=0, le=24 * 3600)
    heavy_work_max_concurrent: int = Field(default=3, ge=2, le=64)
    heavy_work_wait_s: float = Field(default=10.0, ge=0, le=300)
    registration_max_active_per_token: int = Field(default=4, ge=1, le=1000)
    registration_max_active: int = Field(default=64, ge=1, le=100_000)
    job_lease_s: float = Field(default=30.0, ge=0.5, le=3600)
    registration_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Runs of a registration job in all when its worker dies under it; 1: never "
        "retried (IGRT_REGISTRATION_MAX_ATTEMPTS).",
    )
    dicom_auto_register: bool = Field(
        default=True,
        description="Queue a registration when a received CBCT series becomes a volume of a "
        "session whose patient has a planning CT (IGRT_DICOM_AUTO_REGISTER).",
    )
    stream_max_frame_bytes: int = Field(default=8 * _MIB, gt=0)
    stream_max_open: int = Field(default=32, ge=1, le=1024)
    stream_max_per_token: int = Field(default=16, ge=1, le=1024)
    stream_search_threads: int = Field(default=1, ge=1, le=16)
    stream_idle_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    monitor_max_open: int = Field(default=64, ge=1, le=1024)
    monitor_max_per_token: int = Field(default=8, ge=1, le=1024)
    credential_recheck_s: float = Field(default=2.0, gt=0, le=60)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_timeout_s: float = Field(default=10.0, gt=0, le=120)
    token_pepper: SecretStr | None = None
    demo_data: bool = True
    protocol_file: Path | None = Field(
        default=None, description="Site motion protocol (TOML); the built-in one when unset."
    )
    first_run_token: bool = True
    # 30 s at 2 fps: enough breathing cycles (>= 5) for the demo to reach a decision.
    demo_duration_s: float = Field(default=30.0, gt=0, le=120)
    demo_fps: float = Field(default=2.0, gt=0, le=30)
    demo_binning: int = Field(default=2, ge=1, le=4)
    metrics_public: bool = False
    web_session_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    web_session_idle_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    cookie_secure: bool = False
    hsts: bool = False
    first_run_token_ttl_s: float = Field(default=24 * 3600.0, gt=0, le=30 * 24 * 3600)
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
    def _heavy_work_above_registrations(self) -> Settings:
        # Registration jobs hold heavy-work slots while they run: with no slot left over, every
        # upload would wait behind them and be refused.
        if self.heavy_work_max_concurrent <= self.registration_workers:
            raise ValueError(
                "heavy_work_max_concurrent must be greater than registration_workers "
                f"({self.heavy_work_max_concurrent} <= {self.registration_workers})"
            )
        return self

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
