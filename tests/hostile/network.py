# expect: ^$
# Every way out should fail; anything that works prints ESCAPED.
import socket

for host, port in [("1.1.1.1", 53), ("8.8.8.8", 443), ("127.0.0.1", 6379), ("::1", 6379)]:
    try:
        socket.create_connection((host, port), timeout=1).close()
        print("ESCAPED: connected to", host, port)
    except OSError as exc:
        print("blocked", host, port, exc)
try:
    print("ESCAPED: resolved", socket.getaddrinfo("example.com", 80)[0])
except OSError as exc:
    print("no dns", exc)
names = [name for _, name in socket.if_nameindex()]
if names != ["lo"]:
    print("ESCAPED: interfaces", names)
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0/tmp/.X11-unix/X0")
    print("ESCAPED: abstract unix socket")
except OSError:
    pass
