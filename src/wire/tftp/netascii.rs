//! `netascii` conversion (RFC 1350 §1, RFC 764): on the wire a line ends in
//! CR LF and a bare CR is sent as CR NUL. Both converters stream with O(1)
//! state, so a transfer never holds the file in memory.

/// Local bytes → netascii (LF → CR LF, CR → CR NUL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetasciiEncoder {
    pending: Option<u8>,
}

impl NetasciiEncoder {
    /// A fresh encoder.
    pub const fn new() -> Self {
        NetasciiEncoder { pending: None }
    }

    /// The second byte of an expanded CR or LF not yet written (it goes out
    /// first on the next call).
    pub fn pending(&self) -> Option<u8> {
        self.pending
    }

    /// Encodes from `input` into `out`; returns `(consumed, written)`.
    /// Stops when `out` is full; call again with the unconsumed rest.
    pub fn encode(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut w = 0;
        if let Some(p) = self.pending {
            match out.first_mut() {
                Some(slot) => {
                    *slot = p;
                    w = 1;
                    self.pending = None;
                }
                None => return (0, 0),
            }
        }
        let mut r = 0;
        while r < input.len() && w < out.len() {
            let c = input[r];
            r += 1;
            let (first, second) = match c {
                b'\n' => (b'\r', Some(b'\n')),
                b'\r' => (b'\r', Some(0)),
                other => (other, None),
            };
            out[w] = first;
            w += 1;
            if let Some(s) = second {
                if w < out.len() {
                    out[w] = s;
                    w += 1;
                } else {
                    self.pending = Some(s);
                }
            }
        }
        (r, w)
    }
}

/// Netascii → local bytes (CR LF → LF, CR NUL → CR; any other byte after a
/// CR is kept after the CR, leniently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetasciiDecoder {
    after_cr: bool,
}

impl NetasciiDecoder {
    /// A fresh decoder.
    pub const fn new() -> Self {
        NetasciiDecoder { after_cr: false }
    }

    /// Decodes all of `input` into `out` and returns the bytes written, or
    /// `None` (nothing written) when `out` is shorter than
    /// `input.len() + 1`, the most one call can produce.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Option<usize> {
        if out.len() < input.len() + 1 {
            return None;
        }
        let mut w = 0;
        for &c in input {
            if self.after_cr {
                self.after_cr = false;
                match c {
                    b'\n' => {
                        out[w] = b'\n';
                        w += 1;
                        continue;
                    }
                    0 => {
                        out[w] = b'\r';
                        w += 1;
                        continue;
                    }
                    _ => {
                        out[w] = b'\r';
                        w += 1;
                    }
                }
            }
            if c == b'\r' {
                self.after_cr = true;
            } else {
                out[w] = c;
                w += 1;
            }
        }
        Some(w)
    }

    /// Call at end of stream: a dangling CR becomes a CR. Returns it if any.
    pub fn finish(&mut self) -> Option<u8> {
        core::mem::take(&mut self.after_cr).then_some(b'\r')
    }
}
