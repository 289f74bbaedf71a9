//! The lease writer: group commit of the lease records the packet path
//! queues, then the ACKs that grant them (see the module docs of
//! [`super`]).

use std::io;
use std::net::SocketAddrV4;
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use std::vec::Vec;

use crate::dhcp::store::{LeaseRecord, LeaseStore};

use super::LeaseFile;
use super::server::Sockets;

/// ACKs waiting until the lease records that they grant are durable,
/// handed from the packet path to the lease writer. The buffers keep
/// their capacity from one group commit to the next, so the packet path
/// does not allocate.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) records: Vec<LeaseRecord>,
    /// The held datagrams, back to back.
    pub(super) bytes: Vec<u8>,
    /// Per datagram: the sending socket's address (the `local` of its
    /// `Transmit`), destination, end offset in `bytes`.
    pub(super) sends: Vec<(Option<SocketAddrV4>, SocketAddrV4, usize)>,
    /// The writer sleeps on the condition variable (the packet path must
    /// wake it).
    writer_waiting: bool,
    /// No more batches: the writer commits what it has and ends.
    closed: bool,
    /// Over [`MAX_HELD`]: answers are being dropped (logged once per
    /// episode).
    overflowing: bool,
}

impl Held {
    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.sends.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.bytes.clear();
        self.sends.clear();
    }

    /// Move everything from `from` to the end of `self`.
    fn take_from(&mut self, from: &mut Held) {
        self.records.extend_from_slice(&from.records);
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&from.bytes);
        self.sends
            .extend(from.sends.iter().map(|&(p, to, end)| (p, to, base + end)));
        from.clear();
    }
}

/// Most ACKs held for the writer; beyond, answers are dropped (with their
/// records, so no client holds an unlogged lease) until the disk catches
/// up, and clients retry.
pub const MAX_HELD: usize = 65_536;

/// The hand-over point between the packet path and the lease writer.
#[derive(Debug, Default)]
pub(super) struct Commit {
    held: Mutex<Held>,
    wake: Condvar,
}

impl Commit {
    /// Queue a batch; wakes the writer if it sleeps.
    pub(super) fn push(&self, batch: &mut Held) -> io::Result<()> {
        let Ok(mut h) = self.held.lock() else {
            return Err(io::Error::other("dhcp lease writer lock poisoned"));
        };
        if h.closed {
            return Err(io::Error::other("dhcp lease writer stopped"));
        }
        if h.sends.len() >= MAX_HELD {
            if !h.overflowing {
                h.overflowing = true;
                tracing::warn!(
                    held = h.sends.len(),
                    "dhcp: lease log behind, answers dropped until it catches up"
                );
            }
            batch.clear();
            return Ok(());
        }
        h.overflowing = false;
        h.take_from(batch);
        if h.writer_waiting {
            h.writer_waiting = false;
            self.wake.notify_one();
        }
        Ok(())
    }

    pub(super) fn close(&self) {
        if let Ok(mut h) = self.held.lock() {
            h.closed = true;
            self.wake.notify_one();
        }
    }
}

/// Group commit: take everything queued, append it, fsync once, then send
/// the held ACKs; meanwhile the packet path goes on queueing.
pub(super) fn lease_writer(
    mut store: LeaseFile,
    commit: &Commit,
    sockets: &Sockets,
    window: Duration,
) {
    let mut mine = Held::default();
    loop {
        {
            let Ok(mut h) = commit.held.lock() else {
                return;
            };
            while h.is_empty() && !h.closed {
                h.writer_waiting = true;
                h = match commit.wake.wait(h) {
                    Ok(h) => h,
                    Err(_) => return,
                };
            }
            h.writer_waiting = false;
            if h.is_empty() && h.closed {
                return;
            }
            if !window.is_zero() && !h.closed {
                // Let the group grow; the packet path queues meanwhile
                // (writer_waiting is false: they need not wake us).
                drop(h);
                std::thread::sleep(window);
                h = match commit.held.lock() {
                    Ok(h) => h,
                    Err(_) => return,
                };
            }
            core::mem::swap(&mut mine.records, &mut h.records);
            core::mem::swap(&mut mine.bytes, &mut h.bytes);
            core::mem::swap(&mut mine.sends, &mut h.sends);
        }
        let mut ok = true;
        for r in &mine.records {
            if let Err(e) = store.append(r) {
                tracing::error!(error = %e, "dhcp: lease log append failed");
                ok = false;
            }
        }
        if let Err(e) = store.sync() {
            tracing::error!(error = %e, "dhcp: lease log sync failed");
            ok = false;
        }
        // Not durable: do not acknowledge; clients will retry.
        if ok {
            let mut start = 0;
            for &(from, to, end) in &mine.sends {
                if let Some(bytes) = mine.bytes.get(start..end) {
                    sockets.send(from, to, bytes);
                }
                start = end;
            }
            // Bounded size: rewrite the live leases once the log holds
            // COMPACT_FACTOR records per lease (after the ACKs left: a
            // compaction does not delay them).
            match store.maybe_compact() {
                Ok(true) => tracing::debug!(leases = store.live(), "dhcp: lease log compacted"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "dhcp: lease log compaction failed"),
            }
        }
        mine.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instant;
    use crate::dhcp::leases::ClientKey;
    use crate::dhcp::store::RecordKind;
    use std::net::Ipv4Addr;

    fn batch(n: u8, datagrams: &[&[u8]]) -> Held {
        let mut b = Held::default();
        b.records.push(LeaseRecord {
            kind: RecordKind::Granted,
            addr: Ipv4Addr::new(10, 0, 0, n),
            client: ClientKey::new(None, 1, &[2, 0, 0, 0, 0, n]),
            expires: Instant::from_secs(100),
        });
        for d in datagrams {
            b.bytes.extend_from_slice(d);
            b.sends.push((
                None,
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 68),
                b.bytes.len(),
            ));
        }
        b
    }

    /// Batches from the packet path join into one group with each
    /// datagram's bytes intact (the writer sends exactly what the engine
    /// wrote, after the group's fsync).
    #[test]
    fn held_batches_join_with_their_datagrams_intact() {
        let mut group = Held::default();
        let mut a = batch(1, &[b"ack-one", b"ack-two!"]);
        let mut b = batch(2, &[b"ack-three"]);
        group.take_from(&mut a);
        group.take_from(&mut b);
        assert!(a.is_empty() && b.is_empty() && a.bytes.is_empty());
        assert_eq!(group.records.len(), 2);
        let mut start = 0;
        let mut got = Vec::new();
        for &(_, to, end) in &group.sends {
            got.push((to.ip().octets()[3], &group.bytes[start..end]));
            start = end;
        }
        assert_eq!(
            got,
            [
                (1, &b"ack-one"[..]),
                (1, &b"ack-two!"[..]),
                (2, &b"ack-three"[..])
            ]
        );
    }

    /// Over the bound the batch is dropped whole (records and answers), so
    /// no client is told of a lease that is not logged.
    #[test]
    fn a_full_queue_drops_records_with_their_answers() {
        let c = Commit::default();
        {
            let mut h = c.held.lock().unwrap();
            h.sends = std::vec![(None, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68), 0); MAX_HELD];
        }
        let mut b = batch(3, &[b"ack"]);
        c.push(&mut b).unwrap();
        assert!(b.is_empty());
        let h = c.held.lock().unwrap();
        assert!(h.records.is_empty());
        assert_eq!(h.sends.len(), MAX_HELD);
        assert!(h.overflowing);
    }
}
