#!/usr/bin/env python3
"""Test vectors for the preboot transaction protocol, version 1.

An independent implementation written only from docs/transaction-protocol.md
(section numbers cited below) with Python's standard library (hmac, hashlib,
struct; the CRC-32 of the image-safe record is computed by hand). It builds
one complete conversation from fixed nonces and keys and prints every frame
as hex. tests/transaction_vectors.rs checks that preboot's client and server
engines produce exactly these bytes and accept them.

Usage: python3 tests/vectors/transaction/gen.py > tests/vectors/transaction/conversation.txt
"""

import hashlib
import hmac
import struct

# --- fixed inputs -----------------------------------------------------------
KEY = b"preboot test vector site secret!"          # site secret K (32 bytes)
KEY_ID = b"site"                                   # key id kid
NC = bytes(range(0x00, 0x10))                      # client nonce
NS = bytes(range(0xA0, 0xB0))                      # server nonce
SID = 0x0123456789ABCDEF                           # session id

MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
UUID = bytes.fromhex("00112233445566778899aabbccddeeff")

# --- §2 framing --------------------------------------------------------------
HELLO, PROOF, INFO, MENU_Q, TASK_Q, REPORT = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06


def H(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def frame(mtype, status, rid, sid, payload, mac_key=None):
    """§2: 24-byte header, payload, optional 32-byte MAC over header ‖ payload
    (§2.4), with the mac length field already 32 in the MAC'd header."""
    mac_len = 32 if mac_key is not None else 0
    header = b"PBTX" + struct.pack(">BBBBIQHH", 1, mtype, status, 0, rid, sid,
                                   len(payload), mac_len)
    body = header + payload
    if mac_key is not None:
        body += H(mac_key, body)
    return body


def tlv(t, value):
    """§2.3: type u8, length u16 BE, value."""
    return struct.pack(">BH", t, len(value)) + value


def str8(s):
    """§2.3: a string inside a composite value: len u8 ‖ UTF-8."""
    b = s.encode()
    return bytes([len(b)]) + b


def ip(a):
    return bytes(int(x) for x in a.split("."))


# --- §10.2 image-safe record --------------------------------------------------
def crc32(data):
    """IEEE 802.3: reflected, polynomial 0xEDB88320, init/final XOR 0xFFFFFFFF."""
    c = 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def image_safe(generation, fields):
    def f(t, v):
        return bytes([t, len(v)]) + v
    body = b"".join(f(t, v) for t, v in fields)
    length = 12 + len(body) + 4
    rec = b"PBIS" + struct.pack(">BBHI", 1, 0, length, generation) + body
    return rec + struct.pack(">I", crc32(rec))


RECORD = image_safe(3, [
    (1, b"images/win11-base.img"),       # BaseImage
    (2, b"images/office.img"),           # AddOnImage
    (3, b"lab-pc-07"),                   # WorkstationName
    (4, b"cn=lab-pc-07,ou=lab"),         # DirectoryId
    (5, bytes([1])),                     # NetMode static
    (6, ip("10.1.2.3")),                 # Address
    (7, ip("255.255.0.0")),              # Netmask
    (8, ip("10.1.0.1")),                 # Gateway
    (9, ip("10.1.0.53")),                # DnsServer
    (10, struct.pack(">I", 1)),          # PendingFlags: image on next boot
])

# --- §3 handshake -------------------------------------------------------------
sid8 = struct.pack(">Q", SID)
server_proof = H(KEY, b"PBTX1 server", NC, NS, sid8, KEY_ID)
client_proof = H(KEY, b"PBTX1 client", NC, NS, sid8, KEY_ID)
SK = H(KEY, b"PBTX1 session", NC, NS, sid8)

out = []
out.append(("hello", frame(HELLO, 0, 1, 0, NC + bytes([len(KEY_ID)]) + KEY_ID)))
out.append(("challenge", frame(HELLO | 0x80, 0, 1, SID, NS + server_proof)))
out.append(("proof", frame(PROOF, 0, 2, SID, client_proof, SK)))
out.append(("proof_ack", frame(PROOF | 0x80, 0, 2, SID, b"", SK)))

# --- §4.3 WorkstationInfo / InfoAck (TLVs in ascending type order) ---------
info = b"".join([
    tlv(1, MAC),                                         # MacAddress
    tlv(2, UUID),                                        # MachineUuid
    tlv(3, struct.pack(">H", 7)),                        # ClientArch EFI x64
    tlv(4, b"Intel(R) Xeon(R) E-2234"),                  # CpuModel
    tlv(5, struct.pack(">H", 4)),                        # CpuCount
    tlv(6, struct.pack(">I", 16384)),                    # RamMb
    tlv(7, struct.pack(">I", 512000)),                   # DiskMb, disk 0
    tlv(7, struct.pack(">I", 1024)),                     # DiskMb, disk 1
    tlv(8, MAC + struct.pack(">HH", 0x8086, 0x15B8)),    # Nic
    tlv(9, struct.pack(">HH", 0x8086, 0x15B8)),          # PciDevice
    tlv(9, struct.pack(">HH", 0x10DE, 0x1EB8)),          # PciDevice
    tlv(10, RECORD),                                     # ImageSafe
    tlv(11, bytes([1]) + ip("10.1.2.3") + ip("255.255.0.0") + ip("10.1.0.1")),  # IpConfig
    tlv(12, ip("10.1.0.53")),                            # DnsServer
])
out.append(("workstation_info", frame(INFO, 0, 3, SID, info, SK)))
info_ack = tlv(1, bytes([1])) + tlv(2, b"lab-pc-07")
out.append(("info_ack", frame(INFO | 0x80, 0, 3, SID, info_ack, SK)))

# --- §4.4 MenuQuery / MenuReply ----------------------------------------------
out.append(("menu_query", frame(MENU_Q, 0, 4, SID, b"", SK)))
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
out.append(("menu_reply", frame(MENU_Q | 0x80, 0, 4, SID, menu, SK)))

# --- §4.5 TaskQuery / TaskReply ------------------------------------------------
out.append(("task_query", frame(TASK_Q, 0, 5, SID, b"", SK)))
tasks = b"".join([
    # task 1: RestoreImage from 10.0.0.5, partitions 1 and 2
    tlv(1, struct.pack(">IB", 1, 1) + ip("10.0.0.5") + str8("images/win11-base.img") + bytes([2, 1, 2])),
    # task 2: CreateImage to 10.0.0.5
    tlv(1, struct.pack(">IB", 2, 2) + ip("10.0.0.5") + str8("uploads/lab-pc-07.img")),
    # task 3: Maintenance
    tlv(1, struct.pack(">IB", 3, 4) + str8("requested by the workstation object")),
    # Environment: TFTP, kernel, initrd, loader
    tlv(2, bytes([0]) + str8("imaging/linux") + str8("imaging/initrd.img") + str8("imaging/loader.efi")),
])
out.append(("task_reply", frame(TASK_Q | 0x80, 0, 5, SID, tasks, SK)))

# --- §4.6 TaskReport / ReportAck --------------------------------------------
report = tlv(1, struct.pack(">I", 1)) + tlv(2, bytes([1])) + tlv(3, bytes([100]))
out.append(("task_report", frame(REPORT, 0, 6, SID, report, SK)))
out.append(("report_ack", frame(REPORT | 0x80, 0, 6, SID, b"", SK)))

# --- refusals (§5): a tampered MenuQuery, and a retransmitted TaskReport ---
tampered = bytearray(frame(MENU_Q, 0, 7, SID, b"", SK))
tampered[-1] ^= 0x01
out.append(("tampered_menu_query", bytes(tampered)))
out.append(("auth_failed", frame(MENU_Q | 0x80, 7, 7, SID, b"")))

# --- §3.1 a per-workstation key: key id = the MAC in canonical text ---------
WS_KEY = b"lab-pc-07's own key, not the site's"
WS_KID = ":".join(f"{b:02x}" for b in MAC).encode()    # b"52:54:00:12:34:56"
NC2 = bytes([0x11] * 16)
NS2 = bytes([0x22] * 16)
SID2 = 0x1122334455667788
sid8 = struct.pack(">Q", SID2)
SK2 = H(WS_KEY, b"PBTX1 session", NC2, NS2, sid8)
out.append(("ws_hello", frame(HELLO, 0, 1, 0, NC2 + bytes([len(WS_KID)]) + WS_KID)))
out.append(("ws_challenge", frame(HELLO | 0x80, 0, 1, SID2,
                                  NS2 + H(WS_KEY, b"PBTX1 server", NC2, NS2, sid8, WS_KID))))
out.append(("ws_proof", frame(PROOF, 0, 2, SID2,
                              H(WS_KEY, b"PBTX1 client", NC2, NS2, sid8, WS_KID), SK2)))
out.append(("ws_proof_ack", frame(PROOF | 0x80, 0, 2, SID2, b"", SK2)))
# The workstation's own MAC: accepted.
out.append(("ws_info", frame(INFO, 0, 3, SID2, tlv(1, MAC), SK2)))
out.append(("ws_info_ack", frame(INFO | 0x80, 0, 3, SID2, info_ack, SK2)))
# Another workstation's MAC under this key: AuthFailed, MAC'd (§3.1).
other = tlv(1, bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x57]))
out.append(("ws_other_info", frame(INFO, 0, 4, SID2, other, SK2)))
out.append(("ws_other_auth_failed", frame(INFO | 0x80, 7, 4, SID2, b"", SK2)))

print("# preboot transaction protocol v1 test vectors, generated by gen.py")
print("# (independent implementation of docs/transaction-protocol.md).")
print(f"# key = {KEY.hex()}  key id = {KEY_ID.decode()}")
print(f"# Nc = {NC.hex()}  Ns = {NS.hex()}  sid = {SID:016x}")
print(f"# session key SK = {SK.hex()}")
print(f"# per-workstation (ws_*): key = {WS_KEY.hex()}  key id = {WS_KID.decode()}")
print(f"# Nc = {NC2.hex()}  Ns = {NS2.hex()}  sid = {SID2:016x}")
print(f"# image-safe record = {RECORD.hex()}")
for name, b in out:
    print(f"{name} {b.hex()}")
