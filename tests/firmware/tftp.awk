# TFTP transfers reassembled from the raw UDP payloads of a capture (not
# from preboot's own parser), for tests/firmware/boot.sh.
#
#   awk -F'|' -v dir=DIR -v turn=FILE -f tftp.awk udp.tsv > tftp.tsv
#
# Input, one UDP datagram (or one GSO frame) a line, as tshark prints
#   frame.number|ip.src|udp.srcport|ip.dst|udp.dstport|udp.payload|frame.time_epoch
# A transfer is keyed by the client's address and port (RRQ to port 69,
# RFC 1350 §4); DATA blocks are kept once each (retransmissions must carry
# the same bytes); it is complete when a block shorter than the block size
# (RFC 1350 §6, RFC 2348) was acknowledged. The blocks of each transfer are
# written to DIR/<n>; the mean server turnaround (ACK in, next DATA out, in
# milliseconds) to FILE. Output, one transfer a line:
#   n|file|client|nodata|<why>|start|end   or   n|file|client|<status>|DIR/n|start|end
# status: complete, incomplete, conflicting-retransmission or
# malformed-segmented-window, with " (client ERROR c)" / " (server ERROR c)".
function hexstr(h,   s, i) { s = ""; for (i = 1; i < length(h); i += 2) s = s sprintf("%c", strtonum_hex(substr(h, i, 2))); return s }
function strtonum_hex(h,   i, n, c) { n = 0; h = tolower(h); for (i = 1; i <= length(h); i++) { c = index("0123456789abcdef", substr(h, i, 1)) - 1; n = n * 16 + c } return n }
# NUL-separated strings of a request (after the opcode).
function strings(h, arr,   i, n, cur, b) { n = 0; cur = ""; for (i = 5; i < length(h); i += 2) { b = substr(h, i, 2); if (b == "00") { arr[++n] = cur; cur = "" } else cur = cur b } return n }
{
  frame = $1; src = $2 ":" $3; dst = $4 ":" $5; p = tolower($6); now = $7
  if (length(p) < 4) next
  op = strtonum_hex(substr(p, 1, 4))
  if (op == 1 && $5 == 69) {          # RRQ client -> server:69
    n = strings(p, s)
    # The same request again from the same port before any answer is a
    # retransmission (a client whose timer ran out first, RFC 1350 §2),
    # not a transfer of its own.
    if ((src in key) && !(key[src] in answered) && name[key[src]] == hexstr(s[1])) next
    t = ++ntr; key[src] = t; client[t] = src; name[t] = hexstr(s[1]); blksize[t] = 512
    for (i = 3; i < n; i += 2) if (tolower(hexstr(s[i])) == "blksize") want_blk[t] = hexstr(s[i + 1]) + 0
    state[t] = "requested"; t_start[t] = now
  } else if (op == 6 && (dst in key)) {     # OACK server -> client
    t = key[dst]; n = strings(p, s); answered[t] = 1
    for (i = 1; i < n; i += 2) if (tolower(hexstr(s[i])) == "blksize") blksize[t] = hexstr(s[i + 1]) + 0
    oack[t] = 1
  } else if (op == 3 && (dst in key)) {     # DATA server -> client
    t = key[dst]; answered[t] = 1
    # Server turnaround: an ACK in, the next DATA out.
    if (t in acked_at) { turn_sum += now - acked_at[t]; turn_n++; delete acked_at[t] }
    # A window sent with UDP GSO (Linux UDP_SEGMENT) is one frame here when
    # a bridge port offers UDP segmentation (the veth of proxy mode does):
    # the bridge forwards it whole and the tap cuts it into datagrams of
    # 4 + blksize bytes, in order. Cut it the same way; every piece must
    # be a DATA datagram of its own.
    seg = 2 * (4 + blksize[t])
    if (length(p) > seg) gso_frames++
    for (off = 1; off <= length(p); off += seg) {
      q = substr(p, off, seg)
      if (off > 1 && (length(q) < 8 || strtonum_hex(substr(q, 1, 4)) != 3)) { malformed[t] = 1; break }
      blk = strtonum_hex(substr(q, 5, 4)); d = substr(q, 9)
      if ((t, blk) in data) { if (data[t, blk] != d) conflict[t] = 1 }
      else { data[t, blk] = d; if (blk > maxblk[t]) maxblk[t] = blk }
      if (length(d) / 2 < blksize[t]) last[t] = blk
    }
    t_end[t] = now
  } else if (op == 4 && (src in key)) {     # ACK client -> server
    t = key[src]; blk = strtonum_hex(substr(p, 5, 4)); acked_at[t] = now
    if ((t in last) && blk == last[t]) { acked[t] = 1; t_end[t] = now }
  } else if (op == 5) {                     # ERROR, either way
    code = strtonum_hex(substr(p, 5, 4))
    if (dst in key) { t = key[dst]; err[t] = "server ERROR " code; answered[t] = 1 }
    else if (src in key) { t = key[src]; err[t] = "client ERROR " code }
  }
}
END {
  if (turn_n) printf "%.3f\n", turn_sum / turn_n * 1000 > turn; else print "-" > turn
  if (gso_frames) printf "boot.sh: %d TFTP frames were whole GSO windows (cut into DATA datagrams)\n", gso_frames > "/dev/stderr"
  for (t = 1; t <= ntr; t++) {
    f = name[t]; sub(/^\/+/, "", f)
    if (maxblk[t] == 0) {
      # No data: a not-found answer or a size probe the client aborted.
      printf "%d|%s|%s|nodata|%s|%s|%s\n", t, f, client[t], (t in err) ? err[t] : "no answer", t_start[t], t_start[t]
      continue
    }
    out = dir "/" t
    cmd = "xxd -r -p > \"" out "\""
    missing = 0
    for (b = 1; b <= maxblk[t]; b++) {
      if ((t, b) in data) print data[t, b] | cmd; else missing++
    }
    close(cmd)
    status = "incomplete"
    if ((t in last) && last[t] == maxblk[t] && missing == 0 && (t in acked)) status = "complete"
    if (t in conflict) status = "conflicting-retransmission"
    if (t in malformed) status = "malformed-segmented-window"
    if (t in err) status = status " (" err[t] ")"
    printf "%d|%s|%s|%s|%s|%s|%s\n", t, f, client[t], status, out, t_start[t], t_end[t]
  }
}
