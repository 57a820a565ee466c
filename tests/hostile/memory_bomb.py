# expect: memory limit exceeded
hoard = []
while True:
    hoard.append(bytearray(32 * 2**20))
