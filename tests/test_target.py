"""Target resolution (DSN, libpq environment, service file) and password redaction, on a real server."""

from __future__ import annotations

import pytest

from tsmigrate.target import Target, TargetError, redact, resolve_target

PG_VARS = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
)


@pytest.fixture
def clean_env(monkeypatch):
    for var in PG_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_no_target_is_an_error_that_says_what_to_do(clean_env):
    with pytest.raises(TargetError) as raised:
        resolve_target(None)
    message = str(raised.value)
    assert "--dsn" in message and "PGHOST" in message and "--demo" in message


def test_invalid_dsn_is_refused_without_echoing_the_password(clean_env):
    with pytest.raises(TargetError) as raised:
        resolve_target("host=localhost password=s3cr3t-pw bogus_key=1")
    assert "s3cr3t-pw" not in str(raised.value)
    assert "not valid" in str(raised.value)


def test_dsn_target_connects_and_describes_without_password(clean_env, local_server):
    target = resolve_target(local_server.conninfo())
    assert target.source == "--dsn"
    with target.connect() as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == local_server.user
    for text in (target.describe(), repr(target)):
        assert local_server.password not in text
        assert str(local_server.port) in text


def test_uri_dsn_is_accepted(clean_env, local_server):
    uri = f"postgresql://{local_server.user}:{local_server.password}@{local_server.host}:{local_server.port}/postgres"
    with resolve_target(uri).connect() as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_libpq_environment_is_a_target(clean_env, local_server):
    clean_env.setenv("PGHOST", local_server.host)
    clean_env.setenv("PGPORT", str(local_server.port))
    clean_env.setenv("PGUSER", local_server.user)
    clean_env.setenv("PGPASSWORD", local_server.password)
    clean_env.setenv("PGDATABASE", "postgres")
    target = resolve_target(None)
    assert "PGHOST" in target.source and "PGDATABASE" in target.source
    assert target.describe() == f"{local_server.host}:{local_server.port}/postgres as {local_server.user}"
    with target.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "postgres"


def test_service_file_is_a_target(clean_env, local_server, tmp_path):
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(
        f"[ms5]\nhost={local_server.host}\nport={local_server.port}\nuser={local_server.user}\n"
        f"password={local_server.password}\ndbname=postgres\n"
    )
    clean_env.setenv("PGSERVICEFILE", str(service_file))
    clean_env.setenv("PGSERVICE", "ms5")
    target = resolve_target(None)
    assert target.describe().startswith("service ms5")
    with target.connect() as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone()[0] == local_server.port


def test_connection_failure_names_target_without_password(clean_env):
    target = Target("host=127.0.0.1 port=1 user=u password=hunter2-secret dbname=d", "--dsn")
    with pytest.raises(TargetError) as raised:
        target.connect(connect_timeout=2)
    assert "hunter2-secret" not in str(raised.value)
    assert "127.0.0.1:1/d" in str(raised.value)


@pytest.mark.parametrize(
    "text, secret",
    [
        ("postgresql://ms5:p%40ss@db:5432/factory_telemetry", "p%40ss"),
        ("postgres://ms5:plain@db/factory_telemetry", "plain"),
        ("host=db password=abc123 dbname=x", "abc123"),
        ("host=db password='with space' dbname=x", "with space"),
        ("host=db PASSWORD = spaced dbname=x", "spaced"),
    ],
)
def test_redact_hides_passwords_in_every_form(text, secret):
    assert secret not in redact(text)
    assert "***" in redact(text)


def test_redact_hides_known_secrets_anywhere():
    assert redact("error near 'zq9-secret' in input", ("zq9-secret",)) == "error near '***' in input"
