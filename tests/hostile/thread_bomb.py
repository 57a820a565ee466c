# expect: exit status 1 \(RuntimeError: can't start new thread\)
import threading
import time

while True:
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
