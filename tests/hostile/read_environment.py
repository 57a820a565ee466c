# expect: ^$
# Prints every environment it can find; the test checks no secret of the executor shows up.
import glob
import os

print(dict(os.environ))
for path in [
    "/proc/self/environ",
    *glob.glob("/proc/[0-9]*/environ"),
    *glob.glob("/proc/[0-9]*/cmdline"),
]:
    try:
        with open(path, "rb") as f:
            print(path, f.read())
    except OSError as exc:
        print(path, type(exc).__name__)
