//! Steps 4, 12 and 18 of the boot (DESIGN.md): a file by TFTP (RFC 1350
//! with the option extensions of RFC 2347–2349) on the crate's client
//! engine, on a socket of its own (a fresh TID per transfer), into a file
//! or only hashed.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use preboot::driver::clock;
use preboot::engine::Datagram;
use preboot::fs::{FsError, WriteAt};
use preboot::tftp::client::{Client, ClientConfig};
use preboot::tftp::{Event, FailReason};
use preboot::wire::tftp::ErrorCode;
use sha2::{Digest, Sha256};

/// What was fetched.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// From the request to the last block.
    pub duration: Duration,
}

/// Received data: hashed (blocks arrive in order), and written to a file
/// when there is one.
struct Sink {
    file: Option<File>,
    hash: Sha256,
    next: u64,
}

impl WriteAt for Sink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        if offset != self.next {
            // The receiver hands blocks over in order; anything else is a
            // bug this hash must not hide.
            return Err(FsError::Io);
        }
        if let Some(f) = &self.file {
            f.write_all_at(data, offset).map_err(|_| FsError::Io)?;
        }
        self.hash.update(data);
        self.next += data.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FsError> {
        match &self.file {
            Some(f) => f.sync_data().map_err(|_| FsError::Io),
            None => Ok(()),
        }
    }
}

/// Read `name` from the TFTP server at `server` from a new socket on
/// `bind`, into `out` when given; it fails after `limit` without
/// progress. A refusal that is not
/// about the file (error code 0: the server is at its transfer limit) is
/// retried after 1, 2 and 4 s; a missing file or a broken transfer is not.
pub fn tftp(
    bind: Ipv4Addr,
    server: SocketAddrV4,
    name: &str,
    out: Option<&Path>,
    config: ClientConfig,
    limit: Duration,
) -> Result<Fetched, String> {
    let end = std::time::Instant::now() + limit;
    let mut backoff = Duration::from_secs(1);
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match once(bind, server, name, out, config, left) {
            Err(Failure::Busy(e)) if backoff <= Duration::from_secs(4) && left > backoff => {
                tracing::info!(file = name, %server, "TFTP refused ({e}): retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            Err(Failure::Busy(e) | Failure::Other(e)) => return Err(e),
            Ok(f) => return Ok(f),
        }
    }
}

enum Failure {
    Busy(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Other(e)
    }
}

fn once(
    bind: Ipv4Addr,
    server: SocketAddrV4,
    name: &str,
    out: Option<&Path>,
    config: ClientConfig,
    limit: Duration,
) -> Result<Fetched, Failure> {
    let fail = |e: io::Error| format!("TFTP {name} from {server}: {e}");
    let socket = UdpSocket::bind((bind, 0)).map_err(fail)?;
    let local = match socket.local_addr().map_err(fail)? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => return Err(format!("TFTP {name}: socket is not IPv4").into()),
    };
    let file = match out {
        Some(p) => Some(File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let sink = Sink {
        file,
        hash: Sha256::new(),
        next: 0,
    };
    let start = clock::now();
    let mut end = start + limit;
    let mut progress = 0;
    let mut client = Client::new(start, server, name.as_bytes(), config, sink);
    // One DATA block and its header; on the heap (many workstations run
    // on small thread stacks).
    let mut buf = vec![0u8; Client::<Sink>::MAX_DATAGRAM];
    let mut rx = vec![0u8; (usize::from(config.blksize.unwrap_or(512)) + 4).max(2048)];
    loop {
        let now = clock::now();
        // The limit is on silence, not on the whole transfer: a transfer
        // that moves goes on however long the file (PXE ROMs do the same).
        if client.bytes() > progress {
            progress = client.bytes();
            end = now + limit;
        }
        if now >= end {
            return Err(Failure::Other(format!(
                "TFTP {name} from {server}: no progress for {limit:?} ({} bytes)",
                client.bytes()
            )));
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            // A timer is due: first take what arrived while this thread
            // was not running, so that a starved thread neither
            // retransmits nor gives up with the answer in its socket.
            socket.set_nonblocking(true).map_err(fail)?;
            for _ in 0..64 {
                let Ok((n, SocketAddr::V4(from))) = socket.recv_from(&mut rx) else {
                    break;
                };
                client.handle(
                    clock::now(),
                    Datagram {
                        local,
                        remote: from,
                        payload: &rx[..n],
                    },
                );
            }
            socket.set_nonblocking(false).map_err(fail)?;
        }
        client.handle_timeout(now);
        while let Some(t) = client
            .poll_transmit(now, &mut buf)
            .map_err(|e| format!("TFTP {name}: {e}"))?
        {
            socket.send_to(&buf[..t.len], t.remote).map_err(fail)?;
        }
        while let Some(e) = client.poll_event() {
            match e {
                Event::Completed { bytes, duration } => {
                    let sink = client.into_sink();
                    return Ok(Fetched {
                        bytes,
                        sha256: sink.hash.finalize().into(),
                        duration,
                    });
                }
                Event::Failed { reason, bytes } => {
                    let e = format!("TFTP {name} from {server}: {reason:?} after {bytes} bytes");
                    return Err(match reason {
                        FailReason::PeerError(ErrorCode::NotDefined) if bytes == 0 => {
                            Failure::Busy(e)
                        }
                        _ => Failure::Other(e),
                    });
                }
                _ => {}
            }
        }
        let wait = client
            .poll_timeout()
            .unwrap_or(end)
            .min(end)
            .saturating_duration_since(clock::now())
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).map_err(fail)?;
        match socket.recv_from(&mut rx) {
            Ok((n, SocketAddr::V4(from))) => client.handle(
                clock::now(),
                Datagram {
                    local,
                    remote: from,
                    payload: &rx[..n],
                },
            ),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e).into()),
        }
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
