# The transaction exchange (docs/transaction-protocol.md, version 2) read
# from the raw UDP payloads of a capture by the header layout of §2 (not by
# preboot's own parser), for tests/firmware/boot.sh --flow.
#
#   awk -F'|' -v srv=IP -v port=4012 -v mac=VM_MAC -v asked=N -f transaction.awk tx.tsv
#
# Input, one datagram a line, as tshark prints
#   frame.number|eth.src|ip.src|udp.srcport|ip.dst|udp.dstport|udp.payload
# Every datagram to or from srv:port must be a frame of §2: magic "PBTX",
# version 2, tag length 0 or 16, 24 + payload length + tag length = the
# datagram's length (§2.2). Requests (type < 0x80, §2.1) go from the VM's
# MAC to the server, replies (type | 0x80) come back. The handshake frames
# (§4: Hello 72, Cookie 56, Init 172, Accept 81 bytes) are plain with
# session id 0, except the Accept, which names the session; every later
# frame, both ways, is sealed (tag length 16, §2.4) and carries the session
# id of an Accept to that client address and port (§3.5). The first
# `asked` of WorkstationInfo, MenuQuery, TaskQuery (default all three) must
# have been sent and answered with status 0.
# Output: "FAIL <reason>" lines, one "SESSION <session id hex> <ip:port>"
# per accepted session, and one "TRANSACTION <counts>" line.
function byte(h, i) { return hexnum(substr(h, 2 * i + 1, 2)) }
function hexnum(h,   i, n) { n = 0; h = tolower(h); for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1; return n }
BEGIN {
  split("Hello Cookie Init Accept WorkstationInfo MenuQuery TaskQuery TaskReport", name, " ")
  size[1] = 72; size[2] = 172; size[129] = 56; size[130] = 81
}
{
  src = $3 ":" $4; dst = $5 ":" $6; p = tolower($7); len = length(p) / 2
  if ($6 == port && $5 == srv) { client = src; req = 1 }
  else if ($4 == port && $3 == srv) { client = dst; req = 0 }
  else next
  if (len < 24 || substr(p, 1, 8) != "50425458") { bad("frame " $1 ": not a PBTX frame (" len " bytes)"); next }
  ver = byte(p, 4); type = byte(p, 5); status = byte(p, 6)
  sid = substr(p, 25, 16); plen = byte(p, 20) * 256 + byte(p, 21); tlen = byte(p, 22) * 256 + byte(p, 23)
  # A frame that breaks a rule is reported and not counted.
  if (ver != 2) { bad("frame " $1 ": version " ver); next }
  if (tlen != 0 && tlen != 16) { bad("frame " $1 ": tag length " tlen); next }
  if (24 + plen + tlen != len) { bad("frame " $1 ": 24 + payload " plen " + tag " tlen " != " len " bytes"); next }
  if (req && type >= 128) bad("frame " $1 ": reply type " type " sent to the server")
  if (!req && type < 128) bad("frame " $1 ": request type " type " sent by the server")
  if (req && tolower($2) != mac) bad("frame " $1 ": request from MAC " $2 ", not the VM's")
  base = type % 128
  if (base < 1 || base > 6) { bad("frame " $1 ": unknown type " type); next }
  if (base <= 2) {
    # Handshake: plain, fixed sizes.
    if (tlen != 0) bad("frame " $1 ": handshake frame with a tag")
    if (type in size && len != size[type]) bad("frame " $1 ": " (req ? "" : "reply ") "type " type " is " len " bytes, want " size[type])
    if (type == 1) hello++
    else if (type == 129) cookie++
    else if (type == 2) init++
    else if (type == 130) {
      if (status == 0 && sid != "0000000000000000") { accepted[client] = accepted[client] " " sid; sessions[sid] = client; accept++ }
      else accept_refused++
    }
    if (type != 130 && sid != "0000000000000000") bad("frame " $1 ": session id " sid " in a handshake frame")
    next
  }
  # Session messages: sealed both ways, in a session accepted for this
  # client address and port.
  if (tlen != 16) { bad("frame " $1 ": " name[base + 2] " (type " type ") is not sealed"); next }
  if (!(sid in sessions) || sessions[sid] != client) { bad("frame " $1 ": session " sid " was not accepted for " client); next }
  k = base "," req
  n[k]++
  if (!req && status == 0) ok[base]++
  if (!req && status != 0) refused[base]++
}
function bad(why) { if (nbad++ < 20) print "FAIL transaction: " why }
END {
  if (!hello) print "FAIL transaction: no Hello"
  if (!cookie) print "FAIL transaction: no Cookie"
  if (!init) print "FAIL transaction: no Init"
  if (!accept) print "FAIL transaction: no Accept with status 0"
  split("WorkstationInfo MenuQuery TaskQuery", want, " ")
  if (asked == "") asked = 3
  for (i = 1; i <= asked; i++) {
    b = i + 2
    if (!n[b ",1"]) print "FAIL transaction: no sealed " want[i] " request"
    if (!ok[b]) print "FAIL transaction: no sealed " want[i] " reply with status 0"
  }
  for (s in sessions) print "SESSION " s " " sessions[s]
  printf "TRANSACTION hello=%d cookie=%d init=%d accept=%d accept_refused=%d", hello, cookie, init, accept, accept_refused
  for (b = 3; b <= 6; b++) printf " %s=%d/%d", name[b + 2], n[b ",1"], ok[b]
  printf " refused=%d\n", refused[3] + refused[4] + refused[5] + refused[6]
}
