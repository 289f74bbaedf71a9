//! Raw UDP with a TFTP-like window, no TFTP: the baseline the TFTP servers
//! are measured against in `benches/tftp-peers.sh` (same datagram size,
//! same window, one 4-byte acknowledgement per window, no file, no
//! retransmission, plain blocking sockets, buffers sized for the window).
//!
//! ```text
//! udp-window serve PORT                       # answers any number of fetches
//! udp-window fetch PORT SEGMENT WINDOW BYTES  # prints "bytes=… wall_s=… mb_s=…"
//! cargo bench --bench udp-window              # both in one process, 64 MiB
//! ```
//!
//! The fetch request is `SEGMENT WINDOW BYTES` as text; the server sends
//! `WINDOW` datagrams of `SEGMENT` bytes, waits for an acknowledgement,
//! and repeats until `BYTES` are sent, ending with a shorter datagram (like
//! TFTP's last block). A window the client does not complete within
//! 200 ms (loss) is acknowledged anyway: lost bytes are simply not counted.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Socket buffers sized for a whole window of the largest datagrams (the
/// kernel caps them at rmem_max/wmem_max), as the TFTP server and client do.
fn bind(addr: &str) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr)?;
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(8 << 20);
    Ok(sock)
}

fn serve(port: u16, limit: Option<usize>) -> io::Result<()> {
    let sock = bind(&format!("127.0.0.1:{port}"))?;
    let mut req = [0u8; 128];
    let mut served = 0;
    while limit.is_none_or(|l| served < l) {
        let (n, peer) = sock.recv_from(&mut req)?;
        let text = String::from_utf8_lossy(&req[..n]);
        let nums: Vec<usize> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [segment, window, bytes] = nums[..] else {
            continue;
        };
        if !(5..=65_507).contains(&segment) || window == 0 {
            continue;
        }
        blast(&sock, peer, segment, window, bytes)?;
        served += 1;
    }
    Ok(())
}

fn blast(
    sock: &UdpSocket,
    peer: SocketAddr,
    segment: usize,
    window: usize,
    bytes: usize,
) -> io::Result<()> {
    let data = vec![0x5au8; segment];
    let mut ack = [0u8; 16];
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut sent = 0;
    let mut last = false;
    while !last {
        for _ in 0..window {
            let n = (bytes - sent).min(segment);
            let n = if n == segment && sent + n == bytes {
                n - 1
            } else {
                n
            };
            sock.send_to(&data[..n], peer)?;
            sent += n;
            if n < segment {
                last = true;
                break;
            }
        }
        // One acknowledgement per window (ends early on a timeout).
        let _ = sock.recv_from(&mut ack);
    }
    sock.set_read_timeout(None)?;
    Ok(())
}

fn fetch(port: u16, segment: usize, window: usize, bytes: usize) -> io::Result<(usize, Duration)> {
    let sock = bind("127.0.0.1:0")?;
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    sock.send_to(format!("{segment} {window} {bytes}").as_bytes(), server)?;
    let (mut got, mut in_window, mut timeouts) = (0, 0, 0);
    let mut from = server;
    while timeouts < 10 && start.elapsed() < Duration::from_secs(120) {
        match sock.recv_from(&mut buf) {
            Ok((n, f)) => {
                from = f;
                got += n;
                in_window += 1;
                if n < segment {
                    sock.send_to(b"done", from)?;
                    break;
                }
                if in_window == window {
                    in_window = 0;
                    sock.send_to(b"ack", from)?;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                timeouts += 1;
                in_window = 0;
                sock.send_to(b"ack", from)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((got, start.elapsed()))
}

fn report(got: usize, wall: Duration) {
    println!(
        "bytes={got} wall_s={:.4} mb_s={:.2}",
        wall.as_secs_f64(),
        got as f64 / 1e6 / wall.as_secs_f64()
    );
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let num = |i: usize| -> io::Result<usize> {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad arguments"))
    };
    match args.first().map(String::as_str) {
        Some("serve") => serve(num(1)? as u16, None),
        Some("fetch") => {
            let (got, wall) = fetch(num(1)? as u16, num(2)?, num(3)?, num(4)?)?;
            report(got, wall);
            Ok(())
        }
        _ => {
            // `cargo bench`: both ends in this process, 1468-byte blocks,
            // window 16, 64 MiB.
            let port = 17_999;
            let server = std::thread::spawn(move || serve(port, Some(1)));
            std::thread::sleep(Duration::from_millis(100));
            let (got, wall) = fetch(port, 1472, 16, 64 << 20)?;
            print!("udp-window 1472 B x 16, one process: ");
            report(got, wall);
            server
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?
        }
    }
}
