#!/usr/bin/env python3
"""A TFTP client on a tap device, the way a firmware guest sees the wire.

    tap_client.py TAP CLIENT_IP SERVER_IP FILE BLKSIZE WINDOWSIZE OUT

Attaches to the tap device TAP (IFF_TAP | IFF_NO_PI), answers ARP for
CLIENT_IP, resolves SERVER_IP, reads FILE with the blksize (RFC 2348) and
windowsize (RFC 7440) options and acknowledges each window by its last
block. Every frame is checked as a guest without checksum offload would:
IPv4 total length within the 1500-byte MTU and a valid UDP checksum
(RFC 768; a sender that left it to offload hands over a wrong one). Writes
the file to OUT and prints one line
    RESULT bytes=N data=N bad_checksum=N oversize=N max_ip_len=N
Bounded: gives up after 30 seconds. Exit status 0 when the transfer
completed, 1 otherwise.
"""
import fcntl
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
MY_MAC = bytes.fromhex("525400fe0001")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ipv4(src, dst, payload, proto=17):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", 0xFFFF - csum(hdr)) + hdr[12:] + payload


def udp(src, dst, sport, dport, data):
    length = 8 + len(data)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    c = 0xFFFF - csum(pseudo + hdr + data)
    return struct.pack("!HHHH", sport, dport, length, c or 0xFFFF) + data


def main():
    tap, my_ip, srv_ip, name, blksize, windowsize, out = sys.argv[1:8]
    my_ip, srv_ip = bytes(map(int, my_ip.split("."))), bytes(map(int, srv_ip.split(".")))
    blksize, windowsize = int(blksize), int(windowsize)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
    deadline = time.time() + 30
    srv_mac = None
    sport = 1308
    tid = None
    data = {}
    last = None
    acked = 0
    stats = dict(data=0, bad_checksum=0, oversize=0, max_ip_len=0)

    def send_ip(payload):
        os.write(fd, srv_mac + MY_MAC + b"\x08\x00" + ipv4(my_ip, srv_ip, payload))

    def send_tftp(dport, msg):
        send_ip(udp(my_ip, srv_ip, sport, dport, msg))

    def rrq():
        send_tftp(69, b"\x00\x01" + name.encode() + b"\x00octet\x00blksize\x00%d\x00windowsize\x00%d\x00" % (blksize, windowsize))

    next_try = 0
    while time.time() < deadline and (last is None or acked < last):
        now = time.time()
        if now >= next_try:
            next_try = now + 1
            if srv_mac is None:
                arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MY_MAC + my_ip + b"\0" * 6 + srv_ip
                os.write(fd, b"\xff" * 6 + MY_MAC + b"\x08\x06" + arp)
            elif tid is None:
                rrq()
            else:
                send_tftp(tid, struct.pack("!HH", 4, acked & 0xFFFF))
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        f = os.read(fd, 70000)
        etype = f[12:14]
        if etype == b"\x08\x06" and len(f) >= 42:
            op = struct.unpack("!H", f[20:22])[0]
            if op == 2 and f[28:32] == srv_ip and srv_mac is None:
                srv_mac = f[22:28]
                next_try = 0
            elif op == 1 and f[38:42] == my_ip:
                reply = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + MY_MAC + my_ip + f[22:28] + f[28:32]
                os.write(fd, f[22:28] + MY_MAC + b"\x08\x06" + reply)
            continue
        if etype != b"\x08\x00" or f[23] != 17 or f[26:30] != srv_ip:
            continue
        ip = f[14:]
        ip_len = struct.unpack("!H", ip[2:4])[0]
        stats["max_ip_len"] = max(stats["max_ip_len"], ip_len)
        ihl = (ip[0] & 15) * 4
        seg = ip[ihl:ip_len]
        sp, dp, ulen, ucs = struct.unpack("!HHHH", seg[:8])
        if dp != sport:
            continue
        if ip_len > 1500:
            stats["oversize"] += 1
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(seg))
        if ucs == 0 or csum(pseudo + seg) != 0xFFFF:
            stats["bad_checksum"] += 1
            continue  # a guest drops it
        msg = seg[8:ulen]
        op = struct.unpack("!H", msg[:2])[0]
        if op == 6 and tid is None:
            tid = sp
            send_tftp(tid, b"\x00\x04\x00\x00")
            next_try = time.time() + 1
        elif op == 3 and sp == tid:
            stats["data"] += 1
            blk = struct.unpack("!H", msg[2:4])[0]
            if blk == (acked + 1) & 0xFFFF:
                acked += 1
                data[acked] = msg[4:]
                if len(msg) - 4 < blksize:
                    last = acked
                if acked % windowsize == 0 or last == acked:
                    send_tftp(tid, struct.pack("!HH", 4, acked & 0xFFFF))
                    next_try = time.time() + 1
        elif op == 5:
            break
    with open(out, "wb") as o:
        for b in range(1, acked + 1):
            o.write(data[b])
    print("RESULT bytes=%d %s" % (sum(len(d) for d in data.values()), " ".join("%s=%d" % kv for kv in stats.items())), flush=True)
    return 0 if last is not None and acked == last else 1


sys.exit(main())
