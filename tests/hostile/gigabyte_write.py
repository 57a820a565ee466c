# expect: file size limit exceeded
block = b"0" * 2**20
with open("big.bin", "wb") as f:
    for _ in range(1024):
        f.write(block)
