//! A TFTP download client on the crate's client engine: fetches one file,
//! or the same file N times concurrently from one event loop (a load
//! generator, used by `benches/tftp-peers.sh` as the same client for every
//! server).
//!
//! ```text
//! cargo run --release --example tftp-get -- --server 127.0.0.1:69 --file pxelinux.0 \
//!     [--out FILE] [--blksize N] [--windowsize N] [--tsize] [--count N] [--time-limit SECS]
//! cargo run --release --example tftp-get -- --server 10.0.0.1:1759 --file pxeboot.0 \
//!     --mtftp 239.255.1.1:3001 --mtftp-local 10.0.0.2 [--listen SECS] [--delay SECS] \
//!     [--tftp-server 10.0.0.1:69] [--out FILE]
//! ```
//!
//! With `--mtftp GROUP:CPORT` it fetches the file by PXE MTFTP from the
//! server's SPORT (`--server`), as a PXE client does
//! (`preboot::driver::mtftp::fetch`): listens `--listen` seconds
//! (MTFTP_TMOUT), opens, re-opens after `--delay` (MTFTP_DELAY), and
//! falls back to plain TFTP from `--tftp-server` (default: the server's
//! address, port 69) when MTFTP is not answered.
//!
//! Prints one line: `ok=… failed=… bytes=… wall_s=… mb_s=… min_s=… median_s=… max_s=…`
//! (MB = 10^6 bytes; per-transfer times from request to last block). Exits
//! non-zero if any transfer failed.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::time::{Duration, Instant as StdInstant};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use preboot::Instant;
use preboot::driver::mtftp::{self, FetchOutcome};
use preboot::engine::Datagram;
use preboot::fs::{FsError, WriteAt};
use preboot::mtftp::Channel;
use preboot::mtftp::client::ClientConfig as MtftpConfig;
use preboot::tftp::Event;
use preboot::tftp::client::{Client, ClientConfig};
use socket2::{Domain, Protocol, Socket, Type};

/// Received data: written to a file, or only counted.
struct Sink {
    file: Option<File>,
    bytes: u64,
}

impl WriteAt for Sink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        if let Some(f) = &self.file {
            f.write_all_at(data, offset).map_err(|_| FsError::Io)?;
        }
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// Download a file over TFTP with this crate's client engine, once or N
/// times concurrently from one event loop.
#[derive(Parser, Debug)]
#[command(name = "tftp-get", version, after_help = AFTER_HELP)]
struct Args {
    /// The TFTP server.
    #[arg(long, value_name = "ADDR:PORT")]
    server: SocketAddrV4,
    /// The file to read.
    #[arg(long, value_name = "NAME")]
    file: String,
    /// Write the data there (only with --count 1) [default: count it only].
    #[arg(long, value_name = "FILE")]
    out: Option<String>,
    /// Request blksize N (RFC 2348).
    #[arg(long, value_name = "N")]
    blksize: Option<u16>,
    /// Request windowsize N (RFC 7440).
    #[arg(long, value_name = "N")]
    windowsize: Option<u16>,
    /// Request tsize (RFC 2349).
    #[arg(long)]
    tsize: bool,
    /// N concurrent downloads of the same file.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Give up after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    time_limit: u64,
    /// Fetch by PXE MTFTP from this group and client port (--server is
    /// then the MTFTP server's SPORT; only with --count 1).
    #[arg(long, value_name = "GROUP:CPORT", requires = "mtftp_local")]
    mtftp: Option<SocketAddrV4>,
    /// With --mtftp: this client's own unicast address (the group is
    /// joined on its interface).
    #[arg(long, value_name = "ADDR")]
    mtftp_local: Option<Ipv4Addr>,
    /// With --mtftp: seconds to listen before opening (MTFTP_TMOUT).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    listen: u8,
    /// With --mtftp: seconds of silence before re-opening (MTFTP_DELAY).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    delay: u8,
    /// With --mtftp: the TFTP server to fall back to [default: the
    /// server's address, port 69].
    #[arg(long, value_name = "ADDR:PORT")]
    tftp_server: Option<SocketAddrV4>,
}

const AFTER_HELP: &str = "\
Prints ok=, failed=, bytes=, wall_s=, mb_s= and per-transfer min/median/max
seconds. Exit status: 0 if every transfer completed, 1 if any failed, 2 on a
usage error.";

/// What to run, from the arguments.
struct Run {
    mtftp: Option<(Channel, Ipv4Addr)>,
    server: SocketAddrV4,
    file: String,
    out: Option<String>,
    config: ClientConfig,
    count: usize,
    time_limit: Duration,
}

impl Run {
    /// Usage errors exit 2, --help and --version 0.
    fn from_args() -> Run {
        let args = Args::parse();
        if args.count > 1 && args.out.is_some() {
            Args::command()
                .error(ErrorKind::ArgumentConflict, "--out needs --count 1")
                .exit();
        }
        if args.count > 1 && args.mtftp.is_some() {
            Args::command()
                .error(ErrorKind::ArgumentConflict, "--mtftp needs --count 1")
                .exit();
        }
        let mtftp = args.mtftp.zip(args.mtftp_local).map(|(group, local)| {
            let channel = Channel {
                group,
                server: args.server,
                listen: Duration::from_secs(u64::from(args.listen)),
                delay: Duration::from_secs(u64::from(args.delay)),
            };
            (channel, local)
        });
        let server = match (mtftp, args.tftp_server) {
            (Some(_), Some(tftp)) => tftp,
            (Some(_), None) => SocketAddrV4::new(*args.server.ip(), 69),
            (None, _) => args.server,
        };
        Run {
            mtftp,
            server,
            file: args.file,
            out: args.out,
            config: ClientConfig {
                blksize: args.blksize,
                windowsize: args.windowsize,
                tsize: args.tsize,
                ..ClientConfig::default()
            },
            count: args.count as usize,
            time_limit: Duration::from_secs(args.time_limit),
        }
    }
}

struct Job<'n> {
    client: Client<'n, Sink>,
    socket: UdpSocket,
    /// The socket's own address (every datagram's `local`).
    local: SocketAddrV4,
    done: Option<Result<Duration, String>>,
}

fn socket() -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Room for a whole window of large blocks (the kernel caps at rmem_max).
    let _ = s.set_recv_buffer_size(8 << 20);
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    Ok(UdpSocket::from_std(s.into()))
}

/// Sends what the client has to send and records how it ended.
fn drive(job: &mut Job<'_>, now: Instant, buf: &mut [u8]) {
    while let Ok(Some(t)) = job.client.poll_transmit(now, buf) {
        let _ = job.socket.send_to(&buf[..t.len], SocketAddr::V4(t.remote));
    }
    while let Some(ev) = job.client.poll_event() {
        match ev {
            Event::Completed { duration, .. } => job.done = Some(Ok(duration)),
            Event::Failed { reason, .. } => job.done = Some(Err(format!("{reason:?}"))),
            _ => {}
        }
    }
}

/// How each transfer ended (`None`: unfinished at the time limit), the
/// bytes received, and the wall time.
type Outcome = (Vec<Option<Result<Duration, String>>>, u64, Duration);

fn run(args: &Run) -> io::Result<Outcome> {
    let epoch = StdInstant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut poll = Poll::new()?;
    let mut jobs = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let file = match &args.out {
            Some(path) => Some(File::create(path)?),
            None => None,
        };
        let sink = Sink { file, bytes: 0 };
        let mut socket = socket()?;
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        let client = Client::new(now(), args.server, args.file.as_bytes(), args.config, sink);
        let SocketAddr::V4(local) = socket.local_addr()? else {
            return Err(io::Error::other("not an IPv4 socket"));
        };
        jobs.push(Job {
            client,
            socket,
            local,
            done: None,
        });
    }
    let mut buf = vec![0u8; 65536];
    for job in &mut jobs {
        drive(job, now(), &mut buf);
    }
    let mut events = Events::with_capacity(1024);
    let mut pending = args.count;
    let mut next_scan = StdInstant::now();
    while pending > 0 && epoch.elapsed() < args.time_limit {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let job = &mut jobs[ev.token().0];
            loop {
                match job.socket.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) => {
                        let (data, rest) = buf.split_at_mut(n);
                        job.client.handle(
                            now(),
                            Datagram {
                                local: job.local,
                                remote: from,
                                payload: data,
                            },
                        );
                        drive(job, now(), rest);
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        // Timers: scanned every 10 ms (deadlines are ≥ 1 s).
        if StdInstant::now() >= next_scan {
            next_scan = StdInstant::now() + Duration::from_millis(10);
            let t = now();
            for job in &mut jobs {
                if job.client.poll_timeout().is_some_and(|d| d <= t) {
                    job.client.handle_timeout(t);
                    drive(job, t, &mut buf);
                }
            }
        }
        // A completed transfer counts once its last block is in; the dally
        // period (for a lost final ACK) does not hold the run up.
        pending = jobs
            .iter()
            .filter(|j| j.done.is_none() && !j.client.is_finished())
            .count();
    }
    let wall = epoch.elapsed();
    let bytes = jobs.iter().map(|j| j.client.sink().bytes).sum();
    Ok((jobs.into_iter().map(|j| j.done).collect(), bytes, wall))
}

/// The MTFTP fetch: `Some` outcome when MTFTP settled it (completed or
/// failed), `None` to fall back to TFTP.
fn run_mtftp(args: &Run, channel: Channel, local: Ipv4Addr) -> Option<io::Result<Outcome>> {
    let file = match args.out.as_deref().map(File::create).transpose() {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    let sink = Sink { file, bytes: 0 };
    let config = MtftpConfig::new(channel);
    let start = StdInstant::now();
    match mtftp::fetch(
        channel,
        local,
        args.file.as_bytes(),
        config,
        sink,
        args.time_limit,
    ) {
        Ok((
            FetchOutcome::Completed {
                opens,
                master,
                duration,
                ..
            },
            sink,
        )) => {
            eprintln!("tftp-get: MTFTP done: {opens} open(s), master: {master}");
            // The time to the last block; a master's dally is not counted.
            Some(Ok((vec![Some(Ok(duration))], sink.bytes, duration)))
        }
        Ok((FetchOutcome::FallBack(reason), _)) => {
            eprintln!(
                "tftp-get: MTFTP: {reason:?}; falling back to TFTP from {}",
                args.server
            );
            None
        }
        Err(e) => Some(Ok((vec![Some(Err(e.to_string()))], 0, start.elapsed()))),
    }
}

fn main() -> ExitCode {
    let args = Run::from_args();
    let result = match args.mtftp {
        Some((channel, local)) => run_mtftp(&args, channel, local).unwrap_or_else(|| run(&args)),
        None => run(&args),
    };
    let (results, bytes, wall) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tftp-get: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut times: Vec<f64> = Vec::new();
    let mut failed = 0;
    for r in &results {
        match r {
            Some(Ok(d)) => times.push(d.as_secs_f64()),
            Some(Err(why)) => {
                failed += 1;
                eprintln!("tftp-get: transfer failed: {why}");
            }
            None => {
                failed += 1;
                eprintln!("tftp-get: transfer unfinished at the time limit");
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        times
            .get(((times.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "ok={} failed={} bytes={} wall_s={:.4} mb_s={:.2} min_s={:.4} median_s={:.4} max_s={:.4}",
        times.len(),
        failed,
        bytes,
        wall.as_secs_f64(),
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        pick(0.0),
        pick(0.5),
        pick(1.0),
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
