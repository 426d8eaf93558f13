"""Configuration from SCHOOLBELL_* variables, generated secrets, production refusals."""

import stat

import pytest

from webapp import config, create_app

STRONG = "s" * 48


def test_environment_overrides_defaults_with_types():
    settings = config.from_environment(
        {
            "SCHOOLBELL_JWT_TTL_S": "120",
            "SCHOOLBELL_HTTPS": "yes",
            "SCHOOLBELL_BROKER_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert settings["JWT_TTL_S"] == 120
    assert settings["HTTPS"] is True
    assert settings["BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert settings["SQLITE_BUSY_TIMEOUT_MS"] == 5000


@pytest.mark.parametrize(("key", "value"), [("JWT_TTL_S", "soon"), ("HTTPS", "maybe")])
def test_bad_values_name_the_variable(key, value):
    with pytest.raises(config.ConfigError, match=f"SCHOOLBELL_{key}"):
        config.from_environment({f"SCHOOLBELL_{key}": value})


def test_development_generates_secrets_once(tmp_path):
    first, second = {"ENV": "development"}, {"ENV": "development"}
    for settings in (first, second):
        settings.update(config.from_environment({}), ENV="development")
        config.finalise(settings, tmp_path)
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["JWT_SECRET"] == second["JWT_SECRET"] != first["SECRET_KEY"]
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert first["DATABASE_URL"] == f"sqlite:///{tmp_path / 'schoolbell.db'}"


@pytest.mark.parametrize(
    ("secret_key", "jwt_secret", "message"),
    [
        ("", STRONG, "SCHOOLBELL_SECRET_KEY is not set"),
        (STRONG, "", "SCHOOLBELL_JWT_SECRET is not set"),
        ("short", STRONG, "SCHOOLBELL_SECRET_KEY is too weak"),
        (STRONG, "changeme", "SCHOOLBELL_JWT_SECRET is too weak"),
        (STRONG, STRONG, "must differ"),
    ],
)
def test_production_refuses_missing_or_weak_secrets(tmp_path, secret_key, jwt_secret, message):
    settings = {
        **config.from_environment({}),
        "ENV": "production",
        "SECRET_KEY": secret_key,
        "JWT_SECRET": jwt_secret,
    }
    with pytest.raises(config.ConfigError, match=message):
        config.finalise(settings, tmp_path)
    assert not (tmp_path / "secret_key").exists()


def test_production_app_starts_with_strong_secrets(database_url):
    app = create_app(
        {
            "ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": STRONG,
            "JWT_SECRET": "j" * 48,
        }
    )
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True


def test_allowed_origins_are_normalised():
    settings = {
        **config.from_environment({}),
        "SECRET_KEY": STRONG,
        "JWT_SECRET": "j" * 48,
        "ALLOWED_ORIGINS": " https://Portal.school.test/ , http://intranet:8080,",
    }
    config.finalise(settings, __import__("pathlib").Path("/nonexistent"))
    assert settings["ALLOWED_ORIGINS"] == ("https://portal.school.test", "http://intranet:8080")


@pytest.mark.parametrize("key", ["WS_FAILED_AUTH_PER_ADDRESS", "SIGNIN_LIMIT_PER_ACCOUNT"])
def test_a_rate_that_does_not_parse_names_the_variable(key, tmp_path):
    settings = {**config.from_environment({}), key: "lots", "SECRET_KEY": STRONG}
    settings["JWT_SECRET"] = "j" * 48
    with pytest.raises(config.ConfigError, match=f"SCHOOLBELL_{key}: 'lots' is not a rate"):
        config.finalise(settings, tmp_path)


@pytest.mark.parametrize(
    ("broker", "storage", "expected"),
    [
        ("memory://", "", "memory://"),  # one process: nothing to share
        ("redis://10.0.0.5:6379/2", "", "redis://10.0.0.5:6379/2"),  # the broker's Redis
        ("rediss://:pw@redis.school.test/0", "", "rediss://:pw@redis.school.test/0"),
        ("redis://10.0.0.5:6379/2", "redis://10.0.0.6:6379/0", "redis://10.0.0.6:6379/0"),
        ("memory://", "memory://", "memory://"),  # set explicitly: wins over the broker
        ("redis://10.0.0.5:6379/2", "memory://", "memory://"),
    ],
)
def test_rate_limits_count_in_the_brokers_redis_unless_told_otherwise(
    broker, storage, expected, tmp_path
):
    settings = {
        **config.from_environment({}),
        "SECRET_KEY": STRONG,
        "JWT_SECRET": "j" * 48,
        "BROKER_URL": broker,
        "RATELIMIT_STORAGE_URL": storage,
    }
    config.finalise(settings, tmp_path)
    assert settings["RATELIMIT_STORAGE_URL"] == settings["RATELIMIT_STORAGE_URI"] == expected


def test_a_rate_limit_redis_that_fails_means_counting_in_memory_not_an_error(tmp_path):
    settings = {
        **config.from_environment({"SCHOOLBELL_RATELIMIT_STORAGE_TIMEOUT_MS": "250"}),
        "SECRET_KEY": STRONG,
        "JWT_SECRET": "j" * 48,
        "RATELIMIT_STORAGE_URL": "redis://10.0.0.6:6379/0",
    }
    config.finalise(settings, tmp_path)
    assert settings["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    assert settings["RATELIMIT_SWALLOW_ERRORS"] is True
    assert settings["RATELIMIT_STORAGE_OPTIONS"] == {
        "wrap_exceptions": True,
        "socket_timeout": 0.25,
        "socket_connect_timeout": 0.25,
    }
