"""The picture the lab's peers send as MMS content: a baseline JPEG's frame (SOI, a JFIF
APP0, then EOI) around 256 octets. Nothing on the way decodes it: its type and octets are
what must arrive intact."""
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + bytes(range(256)) + bytes.fromhex("ffd9")
