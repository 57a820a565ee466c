"""Which container privileges the executor's bubblewrap jail needs, measured on this engine.

Runs `print(6 * 7)` through `swarm sandbox run` in the swarm image under each set of options
(root or the image's unprivileged user; capabilities; seccomp; AppArmor; masked /proc paths)
and prints which sets work, with the error of those that do not. docker-compose.yml's
executor uses the smallest set that works and that docker-compose 1.29 can express (it cannot
pass `systempaths=unconfined`); docs/compose.md explains each privilege that stays.

    python scripts/jail_privileges.py --image swarm:latest [--json bench/results/jail.json]

Needs a Docker engine and the image (`docker compose build`). AppArmor rows only differ on a
host with AppArmor enabled (Ubuntu, Debian 10+ with it on); the output says whether it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

SNIPPET = "print(6 * 7)"
BARE = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]
JAIL_CAPS = ["SYS_ADMIN", "NET_ADMIN", "SETUID", "SETGID"]


def _caps(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--cap-add", name)]


ROOT = ["--user", "root"]
USER = ["--user", "swarm"]  # the image's unprivileged user, uid 10001
UNCONFINED = ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
NO_MASKS = ["--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined"]
NO_APPARMOR = ["--security-opt", "apparmor=unconfined"]

CHOSEN = [*ROOT, *BARE, *UNCONFINED]  # plus JAIL_CAPS: docker-compose.yml's executor

# (label, docker run options); each row removes or adds one thing against a neighbour.
VARIANTS: list[tuple[str, list[str]]] = [
    ("root: SYS_ADMIN NET_ADMIN, seccomp+apparmor unconfined (before)",
     [*ROOT, *_caps("SYS_ADMIN", "NET_ADMIN"), *UNCONFINED]),
    ("root: only SYS_ADMIN NET_ADMIN SETUID SETGID, seccomp+apparmor unconfined, "
     "no-new-privileges (chosen)", [*CHOSEN, *_caps(*JAIL_CAPS)]),
    ("root: chosen less NET_ADMIN", [*CHOSEN, *_caps("SYS_ADMIN", "SETUID", "SETGID")]),
    ("root: chosen less SYS_ADMIN", [*CHOSEN, *_caps("NET_ADMIN", "SETUID", "SETGID")]),
    ("root: chosen less SETUID SETGID", [*CHOSEN, *_caps("SYS_ADMIN", "NET_ADMIN")]),
    ("root: chosen with Docker's default seccomp profile",
     [*ROOT, *BARE, *NO_APPARMOR, *_caps(*JAIL_CAPS)]),
    ("root: Docker's defaults", ROOT),
    ("uid 10001: Docker's defaults", USER),
    ("uid 10001: seccomp unconfined", [*USER, "--security-opt", "seccomp=unconfined"]),
    ("uid 10001: seccomp+systempaths unconfined, no capabilities, no-new-privileges "
     "(the alternative)", [*USER, *BARE, *NO_MASKS]),
]  # fmt: skip


def apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def attempt(image: str, options: list[str]) -> tuple[bool, str]:
    argv = ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "swarm",
            *options, image, "sandbox", "run", "--sandbox", "local", "-"]  # fmt: skip
    try:
        done = subprocess.run(argv, input=SNIPPET, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    if done.returncode == 0 and done.stdout.startswith("--- stdout ---\n42\n"):
        return True, ""
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return False, (text[-1] if text else f"exit {done.returncode}")[:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="swarm:latest")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    rows = []
    print(f"AppArmor on this host: {'yes' if apparmor_enabled() else 'no'}")
    for label, options in VARIANTS:
        ok, why = attempt(args.image, options)
        rows.append({"variant": label, "options": options, "jail_works": ok, "error": why})
        print(f"{'works' if ok else 'FAILS':5}  {label}" + (f"\n       {why}" if why else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"image": args.image, "apparmor": apparmor_enabled(), "rows": rows}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
