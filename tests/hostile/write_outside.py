# expect: ^$
# host-absent: /tmp/swarm-hostile-escape
# host-absent: /usr/swarm-hostile-escape
# host-absent: /root/swarm-hostile-escape
# host-absent: /etc/swarm-hostile-escape
import os

for path in [
    "/usr/swarm-hostile-escape",
    "/etc/swarm-hostile-escape",
    "/root/swarm-hostile-escape",
    "/swarm-hostile-escape",
    "/proc/swarm-hostile-escape",
    "/dev/swarm-hostile-escape",
    "/tmp/swarm-hostile-escape",
    os.path.expanduser("~/swarm-hostile-escape"),
]:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        print("wrote", path)
    except OSError as exc:
        print("denied", path, type(exc).__name__)
for path in ["/usr/bin/python3", "/etc/ld.so.cache"]:
    try:
        os.chmod(path, 0o777)
        print("ESCAPED: chmod", path)
    except OSError:
        pass
