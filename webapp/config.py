"""Configuration: defaults with units in their names, overridden by SCHOOLBELL_* variables.

Every key of `Defaults` can be set from the environment as `SCHOOLBELL_<KEY>`; the value
is converted to the type of the default. Outside testing the app refuses to start
without strong secrets in production, and keeps generated ones under `instance/` for
local use so a newcomer needs no set-up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse as parse_limit

ENV_PREFIX = "SCHOOLBELL_"
MIN_SECRET_LENGTH = 32
# Values that people paste from examples; never acceptable as a production secret.
WEAK_SECRETS = {"changeme", "secret", "dev", "development", "test", "password", "schoolbell"}
DEVELOPMENT_PUBLIC_URL = "http://127.0.0.1:8000"


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to set."""


class Defaults:
    """Every setting with its default; the names are the Flask config keys."""

    # "development" (local use) or "production" (refuses weak or missing secrets).
    ENV = "development"
    DATABASE_URL = ""  # default: sqlite:///<instance>/schoolbell.db
    SECRET_KEY = ""  # default outside production: generated once into instance/
    JWT_SECRET = ""  # signs client JWTs (HS256); generated like SECRET_KEY
    JWT_ISSUER = "schoolbell"
    JWT_AUDIENCE = "schoolbell-client"
    JWT_TTL_S = 3600
    # The old backend's JWT secret (HS256): its tokens (`sub` = e-mail) open the old
    # design's socket path. Empty: only our own client JWTs do. Its `aud` / `iss` are
    # checked only when these are set.
    LEGACY_JWT_SECRET = ""
    LEGACY_JWT_ISSUER = ""
    LEGACY_JWT_AUDIENCE = ""
    BROKER_URL = "memory://"  # redis://host:6379/0 when scaled out
    # The Redis broker's pub/sub link is probed this often (a message to itself), and
    # replaced when the probe is not back within the timeout (realtime/broker.py).
    BROKER_PROBE_INTERVAL_S = 20
    BROKER_PROBE_TIMEOUT_S = 5
    # With Redis: each process's share of presence expires this long after it stopped
    # refreshing it (a killed process's tabs leave presence within about this long).
    PRESENCE_TTL_S = 45
    # Where throttling counts (sign-ins, failed /ws handshakes): redis://... so every
    # process counts together. Empty: BROKER_URL's Redis if it has one, else memory://.
    # While that Redis fails, each process counts on its own (in memory) and sign-ins
    # still work; one that does not answer within the timeout counts as failing.
    RATELIMIT_STORAGE_URL = ""
    RATELIMIT_STORAGE_TIMEOUT_MS = 500
    # Comma-separated origins allowed to open /ws with cookies and embed the client,
    # besides the app's own origin.
    ALLOWED_ORIGINS = ""
    # Set when served over HTTPS: cookies get the Secure flag.
    HTTPS = False
    # Number of reverse proxies in front of the app (X-Forwarded-For trusted that deep).
    PROXY_COUNT = 0
    SQLITE_BUSY_TIMEOUT_MS = 5000
    MAX_UPLOAD_BYTES = 2 * 1024 * 1024
    SIGNIN_LIMIT_PER_ACCOUNT = "5 per 5 minutes"
    SIGNIN_LIMIT_PER_ADDRESS = "30 per 5 minutes"
    # Requests to /api/v1 per API token, client token or signed-in person (else address).
    API_RATE_LIMIT = "1200 per minute"
    # Password hashing runs on native threads (webapp/passwords.py): how many (0: one per
    # CPU, at most 4; each Argon2id hash holds 64 MiB while it runs), how many callers may
    # wait for one, and how long each waits before a 503 with Retry-After.
    PASSWORD_HASH_THREADS = 0
    PASSWORD_QUEUE_LIMIT = 200
    PASSWORD_QUEUE_TIMEOUT_S = 5
    # WebSockets (/ws). gunicorn's worker_connections must stay above WS_MAX_CONNECTIONS
    # so pages and /healthz still answer when every socket slot is taken.
    WS_MAX_CONNECTIONS = 15000
    WS_MAX_PER_USER = 20  # tabs of one signed-in person
    # Per client address only what needs no credentials is limited (a school's NAT puts
    # a thousand people behind one address): sockets still waiting for their first
    # `auth` message, and handshakes that failed to authenticate.
    WS_MAX_UNAUTHENTICATED_PER_ADDRESS = 500
    WS_FAILED_AUTH_PER_ADDRESS = "300 per minute"
    WS_PING_INTERVAL_S = 25
    WS_PONG_TIMEOUT_S = 10
    WS_AUTH_TIMEOUT_S = 10
    WS_SEND_TIMEOUT_S = 5
    WS_MAX_OUTBOX_BYTES = 256 * 1024
    WS_MAX_MESSAGE_BYTES = 64 * 1024  # larger client frames close the socket with 1009
    WS_SEND_BUFFER_BYTES = 64 * 1024  # kernel send buffer per socket: notice stalls early
    WS_MESSAGES_PER_SECOND = 30  # client messages per socket before they are refused
    RECEIPT_FLUSH_INTERVAL_MS = 100
    STATUS_PUSH_INTERVAL_MS = 500  # live dashboard fragments: at most twice a second
    # Garbage collection in the server's workers (realtime/heap.py): freeze long-lived
    # objects, and sweep them once this many sockets (or a quarter of those open) closed.
    GC_FREEZE = True
    GC_SWEEP_AFTER_CLOSES = 1000
    # The school's time zone: how people read and enter times (storage is always UTC).
    TIMEZONE = "UTC"
    # The school's language (en or de): for people who chose none and whose browser asks
    # for neither, and for e-mails and pushes to people who chose none (webapp/i18n.py).
    DEFAULT_LANGUAGE = "en"
    # Sending to more people than this (or an emergency) asks "are you sure?" first.
    CONFIRM_RECIPIENTS_ABOVE = 100
    # Reaching people who have no tab open: Web Push, then e-mail, through the job queue.
    # The address people reach Schoolbell at (links in e-mails), e.g. https://bell.school.org
    # Required in production when SMTP_URL is set; in development it defaults to
    # DEVELOPMENT_PUBLIC_URL (gunicorn_conf.py's default address).
    PUBLIC_URL = ""
    VAPID_PRIVATE_KEY = ""  # default: generated once into instance/vapid_private.pem
    VAPID_SUBJECT = ""  # mailto:it@school.example: push services contact it about problems
    PUSH_AFTER_S = 10  # no receipt from an open tab by then: push to every device
    PUSH_ALLOWED_ORIGINS = ""  # push services besides Google, Mozilla, Microsoft, Apple
    PUSH_MAX_SUBSCRIPTIONS_PER_USER = 10
    PUSH_MAX_TTL_S = 3 * 24 * 3600  # how long a push service keeps trying (or until expiry)
    PUSH_TIMEOUT_S = 10
    EMAIL_AFTER_S = 15 * 60  # still unread and no device reached: one e-mail
    # smtp://host (port 25), smtp://user:password@host?starttls=true (587), or
    # smtps://user:password@host (465); user and password percent-encoded (@ is %40).
    # Empty: no e-mail is sent. Certificates are always verified.
    SMTP_URL = ""
    # PEM file of the authority that signed an internal mail server's certificate (a
    # school's private CA); empty: the system's authorities.
    SMTP_CA_FILE = ""
    SMTP_TIMEOUT_S = 20
    MAIL_FROM = ""  # "Schoolbell <bell@school.example>"; default: schoolbell@<PUBLIC_URL host>
    LINK_TTL_S = 7 * 24 * 3600  # signed links in e-mails stop working after this
    # Background jobs: each web process runs them (off: only `flask --app wsgi worker`).
    JOBS_IN_PROCESS = True
    JOB_CONCURRENCY = 8  # jobs running at once per process
    JOB_POLL_INTERVAL_MS = 1000
    JOB_LEASE_S = 120  # a job a crashed runner held runs again after this
    JOB_MAX_ATTEMPTS = 8
    # No job starts within this long after a broadcast began on the same worker.
    JOB_HOLD_AFTER_BROADCAST_MS = 300
    # The school's night, in TIMEZONE (e.g. "21:00-07:00"; empty: none): pushes and
    # e-mails about normal announcements wait until it ends. Urgent ones never wait.
    QUIET_HOURS = ""
    # "Remind now" once per announcement at most this often.
    REMIND_MIN_INTERVAL_S = 300
    # A scheduled send that goes out this long after its time (no server was running)
    # is marked late on its status page.
    SCHEDULED_LATE_AFTER_S = 60
    # Data protection (services/retention.py): announcements (with their receipts) and
    # finished jobs are deleted this many days after they were sent; audit entries after
    # their own period. "0" or empty: kept forever. Strings: "" must mean forever.
    RETENTION_DAYS = "365"
    AUDIT_RETENTION_DAYS = "730"
    # /metrics (Prometheus) is off unless one of these is set; with both, a scraper needs
    # both. The token is sent as 'Authorization: Bearer <token>'; the allowlist is
    # comma-separated addresses and networks (10.0.0.5, 10.1.0.0/16, ::1).
    METRICS_TOKEN = ""
    METRICS_ALLOW = ""
    # Load htmx from a CDN (same pinned version, with SRI) instead of static/vendor.
    HTMX_FROM_CDN = False
    LOG_LEVEL = "INFO"


def _coerce(raw: str, default: object) -> object:
    """Convert an environment string to the type of its default."""
    if isinstance(default, bool):
        if raw.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.strip().lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"expected true/false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"expected a whole number, got {raw!r}") from None
    return raw


def from_environment(environ: dict[str, str] | None = None) -> dict[str, object]:
    """Return every setting: its default, or its SCHOOLBELL_ variable converted."""
    environ = os.environ if environ is None else environ
    settings: dict[str, object] = {}
    for key, default in vars(Defaults).items():
        if not key.isupper():
            continue
        raw = environ.get(ENV_PREFIX + key)
        if raw is None:
            settings[key] = default
            continue
        try:
            settings[key] = _coerce(raw, default)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_PREFIX}{key}: {exc}") from None
    return settings


def _instance_secret(instance_path: Path, name: str) -> str:
    """Read a generated secret from instance/, creating it (mode 0600) the first time."""
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _check_secret(name: str, value: str) -> None:
    if not value:
        raise ConfigError(
            f"{ENV_PREFIX}{name} is not set. In production set it to a long random value, "
            f'e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    if len(value) < MIN_SECRET_LENGTH or value.lower() in WEAK_SECRETS:
        raise ConfigError(
            f"{ENV_PREFIX}{name} is too weak: use at least {MIN_SECRET_LENGTH} random characters."
        )


def finalise(config: dict, instance_path: Path) -> None:
    """Fill derived settings and enforce the rules on secrets, in place."""
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{instance_path / 'schoolbell.db'}"
    production = config.get("ENV") == "production"
    for name in ("SECRET_KEY", "JWT_SECRET"):
        if production:
            _check_secret(name, config.get(name, ""))
        elif not config.get(name):
            config[name] = _instance_secret(instance_path, name.lower())
    if config["SECRET_KEY"] == config["JWT_SECRET"]:
        raise ConfigError(f"{ENV_PREFIX}SECRET_KEY and {ENV_PREFIX}JWT_SECRET must differ.")
    if production and config.get("LEGACY_JWT_SECRET"):
        # A weak HS256 secret can be guessed offline from any one token: refuse it.
        _check_secret("LEGACY_JWT_SECRET", config["LEGACY_JWT_SECRET"])
    config["ALLOWED_ORIGINS"] = _origins(config.get("ALLOWED_ORIGINS", ""))
    config["PUSH_ALLOWED_ORIGINS"] = _origins(config.get("PUSH_ALLOWED_ORIGINS", ""))
    config["PUBLIC_URL"] = str(config.get("PUBLIC_URL") or "").rstrip("/")
    if not config["PUBLIC_URL"] and not production:
        config["PUBLIC_URL"] = DEVELOPMENT_PUBLIC_URL
    _check_mail(config)
    config["VAPID_SUBJECT"] = _vapid_subject(str(config.get("VAPID_SUBJECT") or "").strip())
    try:
        ZoneInfo(config["TIMEZONE"])
    except (ValueError, ZoneInfoNotFoundError):
        raise ConfigError(
            f"{ENV_PREFIX}TIMEZONE: unknown time zone {config['TIMEZONE']!r} "
            "(use a name like Europe/Berlin)."
        ) from None
    from .i18n import TRANSLATED

    config["DEFAULT_LANGUAGE"] = str(config.get("DEFAULT_LANGUAGE") or "").strip().lower()
    if config["DEFAULT_LANGUAGE"] not in TRANSLATED:
        raise ConfigError(
            f"{ENV_PREFIX}DEFAULT_LANGUAGE: {config['DEFAULT_LANGUAGE']!r} is not one of the "
            f"languages Schoolbell speaks ({', '.join(TRANSLATED)})."
        )
    from .services import quiet_hours

    try:
        config["QUIET_HOURS_WINDOW"] = quiet_hours.parse(config.get("QUIET_HOURS", ""))
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}QUIET_HOURS: {exc}.") from None
    for name in (
        "SIGNIN_LIMIT_PER_ACCOUNT",
        "SIGNIN_LIMIT_PER_ADDRESS",
        "API_RATE_LIMIT",
        "WS_FAILED_AUTH_PER_ADDRESS",
    ):
        try:
            parse_limit(config[name])
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}{name}: {config[name]!r} is not a rate (e.g. '300 per minute')."
            ) from None
    for name in ("RETENTION_DAYS", "AUDIT_RETENTION_DAYS"):
        config[name] = _days(name, config.get(name))
    _metrics_access(config, production)
    config["MAX_CONTENT_LENGTH"] = config["MAX_UPLOAD_BYTES"]
    # simple_websocket.Server options for /ws: frames over this size close with 1009;
    # pings are the hub's job.
    config["WS_SERVER_OPTIONS"] = {
        "max_message_size": config["WS_MAX_MESSAGE_BYTES"],
        "ping_interval": None,
    }
    _ratelimit_storage(config)
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["SESSION_COOKIE_SECURE"] = bool(config.get("HTTPS"))
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    config["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    config["REMEMBER_COOKIE_SECURE"] = bool(config.get("HTTPS"))
    config["PREFERRED_URL_SCHEME"] = "https" if config.get("HTTPS") else "http"


def _days(name: str, value: object) -> int:
    """A retention period in whole days; 0 (also "0" or empty) keeps things forever."""
    raw = str(value if value is not None else "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ConfigError(
            f"{ENV_PREFIX}{name}: {raw!r} is not a number of days (0 or empty: keep forever)."
        )
    return int(raw)


def _metrics_access(config: dict, production: bool) -> None:
    """Parse METRICS_ALLOW into METRICS_ALLOW_NETWORKS; in production a metrics token is
    a secret like the others (a short one could be guessed: /metrics is not throttled)."""
    from .metrics import parse_allowlist

    config["METRICS_TOKEN"] = str(config.get("METRICS_TOKEN") or "").strip()
    if production and config["METRICS_TOKEN"]:
        _check_secret("METRICS_TOKEN", config["METRICS_TOKEN"])
    try:
        config["METRICS_ALLOW_NETWORKS"] = parse_allowlist(str(config.get("METRICS_ALLOW") or ""))
    except ValueError as exc:
        raise ConfigError(
            f"{ENV_PREFIX}METRICS_ALLOW: {exc} (use e.g. 10.0.0.5, 10.1.0.0/16, ::1)."
        ) from None


REDIS_SCHEMES = ("redis", "rediss")  # what BROKER_URL's Redis may be spelt as


def _ratelimit_storage(config: dict) -> None:
    """Flask-Limiter's settings: its storage (RATELIMIT_STORAGE_URL, else BROKER_URL's
    Redis, else memory://), and what it does while that storage fails: count in this
    process's memory instead (logged once), never answer 500 because of it."""
    url = str(config.get("RATELIMIT_STORAGE_URL") or "").strip()
    if not url:
        broker = str(config.get("BROKER_URL") or "")
        url = broker if urlsplit(broker).scheme in REDIS_SCHEMES else "memory://"
    config["RATELIMIT_STORAGE_URL"] = config["RATELIMIT_STORAGE_URI"] = url
    # Storage errors raise limits.errors.StorageError (realtime/admission.py catches it).
    options: dict[str, object] = {"wrap_exceptions": True}
    if urlsplit(url).scheme.startswith(("redis", "valkey")):
        timeout_s = config["RATELIMIT_STORAGE_TIMEOUT_MS"] / 1000
        options |= {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    config["RATELIMIT_STORAGE_OPTIONS"] = options
    config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    config["RATELIMIT_SWALLOW_ERRORS"] = True


def _check_mail(config: dict) -> None:
    """MAIL_FROM is one address (default: schoolbell@<PUBLIC_URL host>). With SMTP_URL
    set: it parses, its CA file loads, and links have somewhere to point."""
    from .services import mail

    if not config.get("MAIL_FROM"):
        config["MAIL_FROM"] = mail.default_sender(config["PUBLIC_URL"])
    elif not mail.valid_sender(config["MAIL_FROM"]):
        raise ConfigError(
            f"{ENV_PREFIX}MAIL_FROM: use one address, e.g. Schoolbell <bell@school.example>."
        )
    if not config.get("SMTP_URL"):
        return
    try:
        settings = mail.smtp_settings(config)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}SMTP_URL: {exc}.") from None
    if settings.ca_file:
        try:
            mail.tls_context(settings)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"{ENV_PREFIX}SMTP_CA_FILE: cannot load {settings.ca_file!r} as PEM "
                f"certificates ({exc})."
            ) from None
    public = urlsplit(config["PUBLIC_URL"])
    if public.scheme not in ("http", "https") or not public.hostname:
        raise ConfigError(
            f"{ENV_PREFIX}PUBLIC_URL must be set (e.g. https://bell.school.example) when "
            f"{ENV_PREFIX}SMTP_URL is: links in e-mails point there."
        )


def _vapid_subject(value: str) -> str:
    """A VAPID subject push services can reach someone at (RFC 8292): mailto: or https:
    (empty: services/push.py derives one from MAIL_FROM or PUBLIC_URL)."""
    if not value:
        return value
    scheme, _, rest = value.partition(":")
    scheme = scheme.lower()
    if (scheme == "mailto" and "@" in rest.strip("@")) or (
        scheme == "https" and rest.startswith("//") and rest[2:].strip("/")
    ):
        return f"{scheme}:{rest}"
    raise ConfigError(
        f"{ENV_PREFIX}VAPID_SUBJECT: {value!r} is neither a mailto: address nor an https: URL "
        "(e.g. mailto:it@school.example); push services contact it about problems."
    )


def _origins(value: str | list | tuple) -> tuple[str, ...]:
    """Parse a comma-separated origin list into normalised 'scheme://host[:port]' items."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip().rstrip("/").lower() for item in items if item.strip())
