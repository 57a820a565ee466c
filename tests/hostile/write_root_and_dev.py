# expect: exit status 1 \(OSError: \[Errno 30\] Read-only file system: '/x'\)
# The jail's / and /dev are tmpfs with no size bound; in a user namespace the jail owns them.
import time

block = b"x" * 2**20
for n in range(1100):
    for top in ("/", "/dev/"):
        with open(f"{top}x" if n == 0 else f"{top}x{n}", "wb") as f:
            f.write(block)
print("ESCAPED: a gigabyte in / and /dev")
time.sleep(0.5)
