//! The MTFTP fetch the boot-server tests make inside their namespaces:
//! `driver::mtftp::fetch` from a loopback address, 300 ms timeouts, into
//! memory. Included with `#[path]`.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use preboot::driver::mtftp::{FetchError, FetchOutcome, fetch};
use preboot::fs::VecSink;
use preboot::mtftp::Channel;
use preboot::mtftp::client::ClientConfig;

/// Fetches `file` by MTFTP on `ch` from client address 127.0.0.`host`
/// (at most 8 MiB, 30 s): how it ended and the bytes.
pub fn fetch_loopback(
    ch: Channel,
    host: u8,
    file: &str,
) -> Result<(FetchOutcome, Vec<u8>), FetchError> {
    let config = loopback_config(ch);
    let sink = VecSink {
        limit: Some(8 << 20),
        ..VecSink::default()
    };
    fetch(
        ch,
        Ipv4Addr::new(127, 0, 0, host),
        file.as_bytes(),
        config,
        sink,
        Duration::from_secs(30),
    )
    .map(|(outcome, sink)| (outcome, sink.data))
}

/// The client settings of these fetches: `ch`, 300 ms timeouts.
pub fn loopback_config(ch: Channel) -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_millis(300),
        ..ClientConfig::new(ch)
    }
}
