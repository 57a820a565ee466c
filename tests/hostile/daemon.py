# expect: ^$
# Leaves a detached grandchild behind; the jail's end must take it down too.
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
    os._exit(0)
print("parent exits")
