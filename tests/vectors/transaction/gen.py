#!/usr/bin/env python3
"""Test vectors for the preboot transaction protocol, version 2.

An independent implementation written only from docs/transaction-protocol.md
(section numbers cited below): Python's standard library (hashlib, hmac,
struct; the CRC-32 of the image-safe record by hand) plus the `cryptography`
package for X25519 and ChaCha20-Poly1305 (Debian: python3-cryptography).
From fixed keys, nonces, ephemeral randomness, cookie secret and session id
it builds complete conversations and prints every frame as hex.
tests/transaction_vectors.rs checks that preboot's client and server engines
produce exactly these bytes and accept them.

Usage: python3 tests/vectors/transaction/gen.py > tests/vectors/transaction/conversation.txt
"""

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# --- fixed inputs -------------------------------------------------------------
SERVER_PRIV = bytes(range(0x40, 0x60))             # S  (§3.1)
WS_PRIV = bytes(range(0x80, 0xA0))                 # s, the workstation's key
STRANGER_PRIV = bytes(range(0xC0, 0xE0))           # an unbound key (§3.4)
NH = bytes(range(0x00, 0x10))                      # Hello nonce (§3.2)
FRESH = bytes(range(0x10, 0x30))                   # r, client randomness (§3.1)
COUNTER = 1                                        # boot counter (§11)
COOKIE_SECRET = bytes(range(0xA0, 0xC0))           # Ck (§3.2)
SERVER_EPH = bytes(range(0x60, 0x80))              # re
SID = 0x0123456789ABCDEF                           # session id
CLIENT_IP, CLIENT_PORT = "10.1.2.3", 49152

MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
OTHER_MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x57])   # another object's
UUID = bytes.fromhex("00112233445566778899aabbccddeeff")

# --- primitives (§3 notation) ---------------------------------------------------
def HASH(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def HMAC(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def HKDF(ck, ikm):
    t = HMAC(ck, ikm)
    o1 = HMAC(t, b"\x01")
    return o1, HMAC(t, o1, b"\x02")


def public(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def DH(priv, pub):
    out = X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(pub))
    assert out != bytes(32)
    return out


def nonce(n):
    """§2.4: 32 zero bits, then n as 64-bit little-endian."""
    return bytes(4) + struct.pack("<Q", n)


def ENC(k, n, ad, p):
    return ChaCha20Poly1305(k).encrypt(nonce(n), p, ad)


# --- §2 framing -------------------------------------------------------------------
HELLO, INIT, INFO, MENU_Q, TASK_Q, REPORT = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
MORE = 0x01


def header(mtype, status, flags, rid, sid, plen, tag_len):
    return b"PBTX" + struct.pack(">BBBBIQHH", 2, mtype, status, flags, rid, sid, plen, tag_len)


def plain(mtype, status, rid, sid, payload, flags=0):
    return header(mtype, status, flags, rid, sid, len(payload), 0) + payload


def sealed(mtype, status, rid, sid, payload, key, flags=0):
    """§2.4: header (tag length 16) ‖ ChaCha20-Poly1305(key, rid, AD = header)."""
    h = header(mtype, status, flags, rid, sid, len(payload), 16)
    return h + ENC(key, rid, h, payload)


def tlv(t, value):
    return struct.pack(">BH", t, len(value)) + value


def str8(s):
    b = s.encode()
    return bytes([len(b)]) + b


def ip(a):
    return bytes(int(x) for x in a.split("."))


# --- §3.3 Noise IK -----------------------------------------------------------------
class Symmetric:
    def __init__(self, prologue, server_pub):
        self.h = b"Noise_IK_25519_ChaChaPoly_SHA256"
        assert len(self.h) == 32
        self.ck = self.h
        self.k = None
        self.n = 0
        self.mix_hash(prologue)
        self.mix_hash(server_pub)

    def mix_hash(self, d):
        self.h = HASH(self.h, d)

    def mix_key(self, ikm):
        self.ck, self.k = HKDF(self.ck, ikm)
        self.n = 0

    def encrypt_and_hash(self, p):
        c = ENC(self.k, self.n, self.h, p)
        self.n += 1
        self.mix_hash(c)
        return c

    def split(self):
        return HKDF(self.ck, b"")


def handshake(ws_priv, eph, server_eph, status, sid):
    """§3.2–§3.3 from both sides' secrets; returns the four frames and keys."""
    hello = plain(HELLO, 0, 1, 0, NH + bytes(32))
    cookie = HMAC(COOKIE_SECRET, b"PBTX2 cookie", ip(CLIENT_IP),
                  struct.pack(">H", CLIENT_PORT), hello)
    cookie_frame = plain(HELLO | 0x80, 0, 1, 0, cookie)
    init_payload = tlv(1, bytes([2]))                       # HighestVersion
    init_len = 16 + 32 + 32 + 48 + len(init_payload) + 16
    init_header = header(INIT, 0, 0, 2, 0, init_len, 0)
    server_pub = public(SERVER_PRIV)
    sym = Symmetric(b"PBTX2" + hello + cookie_frame + init_header, server_pub)
    e_pub = public(eph)
    sym.mix_hash(e_pub)                                     # e
    sym.mix_key(DH(eph, server_pub))                        # es
    enc_s = sym.encrypt_and_hash(public(ws_priv))           # s
    sym.mix_key(DH(ws_priv, server_pub))                    # ss
    enc_p = sym.encrypt_and_hash(init_payload)
    init = init_header + NH + cookie + e_pub + enc_s + enc_p
    assert len(init) == 24 + init_len
    # The responder's side, with the other private keys (same results).
    re_pub = public(server_eph)
    sym.mix_hash(re_pub)                                    # e
    ee = DH(server_eph, e_pub)
    assert ee == DH(eph, re_pub)
    sym.mix_key(ee)                                         # ee
    se = DH(server_eph, public(ws_priv))
    assert se == DH(ws_priv, re_pub)
    sym.mix_key(se)                                         # se
    enc_a = sym.encrypt_and_hash(bytes([status]) + struct.pack(">Q", sid))
    accept = plain(INIT | 0x80, status, 2, sid, re_pub + enc_a)
    kc, ks = sym.split()
    return [("hello", hello), ("cookie", cookie_frame), ("init", init), ("accept", accept)], kc, ks


# --- §3.1 the client's hedged ephemeral key -----------------------------------------
EPH = HASH(b"PBTX2 ephemeral", FRESH, WS_PRIV, struct.pack(">Q", COUNTER))


# --- §10.2 image-safe record ---------------------------------------------------------
def crc32(data):
    """IEEE 802.3: reflected, polynomial 0xEDB88320, init/final XOR 0xFFFFFFFF."""
    c = 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def image_safe(generation, fields):
    body = b"".join(bytes([t, len(v)]) + v for t, v in fields)
    length = 12 + len(body) + 4
    rec = b"PBIS" + struct.pack(">BBHI", 1, 0, length, generation) + body
    return rec + struct.pack(">I", crc32(rec))


ADD_ONS = [f"images/add-on-{i}-office-and-lab-software-bundle-2026-edition.img" for i in range(8)]
RECORD = image_safe(3, [
    (1, b"images/win11-base.img"),                 # BaseImage
    *[(2, a.encode()) for a in ADD_ONS],           # AddOnImage ×8
    (3, b"lab-pc-07"),                             # WorkstationName
    (4, b"cn=lab-pc-07,ou=lab"),                   # DirectoryId
    (5, bytes([1])),                               # NetMode static
    (6, ip("10.1.2.3")),                           # Address
    (7, ip("255.255.0.0")),                        # Netmask
    (8, ip("10.1.0.1")),                           # Gateway
    (9, ip("10.1.0.53")),                          # DnsServer
    (10, struct.pack(">I", 1)),                    # PendingFlags: image on next boot
])

# --- §4.3 WorkstationInfo: a full inventory, longer than one frame ------------------
info = b"".join([
    tlv(1, MAC),                                               # MacAddress
    tlv(2, UUID),                                              # MachineUuid
    tlv(3, struct.pack(">H", 7)),                              # ClientArch EFI x64
    tlv(4, b"Intel(R) Xeon(R) E-2234"),                        # CpuModel
    tlv(5, struct.pack(">H", 4)),                              # CpuCount
    tlv(6, struct.pack(">I", 16384)),                          # RamMb
    *[tlv(7, struct.pack(">I", d)) for d in [512000] + [2000 + i for i in range(15)]],  # DiskMb ×16
    tlv(8, MAC + struct.pack(">HH", 0x8086, 0x15B8)),          # Nic
    *[tlv(8, bytes([2, 0, 0, 0, 1, i]) + struct.pack(">HH", 0x1AF4, 0x1000)) for i in range(15)],
    tlv(9, struct.pack(">HH", 0x8086, 0x15B8)),                # PciDevice
    tlv(9, struct.pack(">HH", 0x10DE, 0x1EB8)),
    *[tlv(9, struct.pack(">HH", 0x1AF4, 0x1040 + i)) for i in range(62)],
    tlv(10, RECORD),                                           # ImageSafe
    tlv(11, bytes([1]) + ip("10.1.2.3") + ip("255.255.0.0") + ip("10.1.0.1")),  # IpConfig
    tlv(12, ip("10.1.0.53")),                                  # DnsServer
])
MAX_PLAIN = 1472 - 24 - 16                                     # §4.7
assert MAX_PLAIN < len(info) <= 2 * MAX_PLAIN, len(info)

out, KC, KS = handshake(WS_PRIV, EPH, SERVER_EPH, 0, SID)

# §4.7: two parts; the first acknowledged with an empty reply, flag more.
out.append(("info_part1", sealed(INFO, 0, 3, SID, info[:MAX_PLAIN], KC, MORE)))
out.append(("info_part1_ack", sealed(INFO | 0x80, 0, 3, SID, b"", KS, MORE)))
out.append(("info_part2", sealed(INFO, 0, 4, SID, info[MAX_PLAIN:], KC)))
info_ack = tlv(1, bytes([1])) + tlv(2, b"lab-pc-07")
out.append(("info_ack", sealed(INFO | 0x80, 0, 4, SID, info_ack, KS)))

# --- §4.4 MenuQuery / MenuReply ---------------------------------------------------------
out.append(("menu_query", sealed(MENU_Q, 0, 5, SID, b"", KC)))
menu = b"".join([
    tlv(1, bytes([2])),                       # MenuMode on key press
    tlv(2, bytes([0x01 | 0x02, ord("m")])),   # Hotkey Ctrl+Alt+m
    tlv(3, struct.pack(">I", 5000)),          # WaitMs
    tlv(4, b"preboot/menu.txt"),              # MenuFile
    tlv(5, bytes([1])),                       # MenuFetch MTFTP
    tlv(6, bytes([1]) + b"Automatic imaging"),
    tlv(6, bytes([2]) + b"Maintenance"),
    tlv(6, bytes([5]) + b"Boot the local disk"),
])
out.append(("menu_reply", sealed(MENU_Q | 0x80, 0, 5, SID, menu, KS)))

# --- §4.5 TaskQuery / TaskReply: ids 1-2 of this object ---------------------------------
# The object asks for a capture and an image on next boot: the capture comes
# first, alone (with maintenance); the restore waits for its success
# (docs/policy.md, "Capture before restore").
out.append(("task_query", sealed(TASK_Q, 0, 6, SID, b"", KC)))
tasks = b"".join([
    tlv(1, struct.pack(">IB", 1, 2) + ip("10.0.0.5") + str8("uploads/lab-pc-07.img")),
    tlv(1, struct.pack(">IB", 2, 4) + str8("requested by the workstation object")),
    tlv(2, bytes([0]) + str8("imaging/linux") + str8("imaging/initrd.img") + str8("imaging/loader.efi")),
])
out.append(("task_reply", sealed(TASK_Q | 0x80, 0, 6, SID, tasks, KS)))

# --- §4.6 TaskReport / ReportAck -------------------------------------------------------
report = tlv(1, struct.pack(">I", 1)) + tlv(2, bytes([1])) + tlv(3, bytes([100]))
out.append(("task_report", sealed(REPORT, 0, 7, SID, report, KC)))
out.append(("report_ack", sealed(REPORT | 0x80, 0, 7, SID, b"", KS)))

# --- §3.4 another object's MAC: IdentityRefused (7), sealed ------------------------------
out.append(("other_info", sealed(INFO, 0, 8, SID, tlv(1, OTHER_MAC), KC)))
out.append(("identity_refused", sealed(INFO | 0x80, 7, 8, SID, b"", KS)))

# --- §3.4 an unbound key: Accept with Pending (6), session id 0 --------------------------
STRANGER_EPH = HASH(b"PBTX2 ephemeral", FRESH, STRANGER_PRIV, struct.pack(">Q", COUNTER))
pending, _, _ = handshake(STRANGER_PRIV, STRANGER_EPH, SERVER_EPH, 6, 0)
out += [("pending_" + name, b) for name, b in pending]

print("# preboot transaction protocol v2 test vectors, generated by gen.py")
print("# (independent implementation of docs/transaction-protocol.md).")
print(f"# server private = {SERVER_PRIV.hex()}  public = {public(SERVER_PRIV).hex()}")
print(f"# workstation private = {WS_PRIV.hex()}  public = {public(WS_PRIV).hex()}")
print(f"# stranger private = {STRANGER_PRIV.hex()}")
print(f"# Nh = {NH.hex()}  r = {FRESH.hex()}  counter = {COUNTER}")
print(f"# ephemeral = {EPH.hex()}")
print(f"# cookie secret = {COOKIE_SECRET.hex()}  server ephemeral = {SERVER_EPH.hex()}  sid = {SID:016x}")
print(f"# client = {CLIENT_IP}:{CLIENT_PORT}")
print(f"# Kc = {KC.hex()}  Ks = {KS.hex()}")
print(f"# image-safe record = {RECORD.hex()}")
for name, b in out:
    print(f"{name} {b.hex()}")
