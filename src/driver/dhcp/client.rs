//! The PXE client engine ([`crate::dhcp::Client`]) on a UDP socket.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::string::String;
use std::time::Duration;

use crate::driver::clock;
use crate::engine::Datagram;

use super::server::{no_datagram_yet, udp_socket};

/// Where and how [`run_client`] talks.
#[derive(Clone, Debug)]
pub struct DhcpClientConfig {
    /// What the client says about itself, and its timeouts.
    pub client: crate::dhcp::client::ClientConfig,
    /// Transaction id (pass randomness in).
    pub xid: u32,
    /// Local socket (`0.0.0.0:68`).
    pub bind: SocketAddrV4,
    /// Bind to this interface (`SO_BINDTODEVICE`, needs root).
    pub interface: Option<String>,
    /// The servers' DHCP port (67; tests use another).
    pub server_port: u16,
    /// The boot servers' port (4011).
    pub boot_port: u16,
    /// Where broadcasts go (`255.255.255.255`).
    pub broadcast_address: Ipv4Addr,
}

impl DhcpClientConfig {
    /// A PXE client on the standard ports.
    pub fn new(client: crate::dhcp::client::ClientConfig, xid: u32) -> Self {
        DhcpClientConfig {
            client,
            xid,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            interface: None,
            server_port: 67,
            boot_port: 4011,
            broadcast_address: Ipv4Addr::BROADCAST,
        }
    }
}

/// Run the PXE client engine on a UDP socket until it binds (returning
/// what it learned) or gives up (an error saying why).
///
/// The address is not configured on the interface: that is the caller's
/// business (a boot tool's own stack, or `ip addr`).
pub fn run_client(config: DhcpClientConfig) -> io::Result<crate::dhcp::client::BootInfo> {
    use crate::dhcp::client::Event as ClientEvent;
    // Port 68 beside the host's own DHCP client.
    let sock = udp_socket(config.bind, config.interface.as_deref(), true)?;
    let local = match sock.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => return Err(io::Error::other("dhcp client: socket not IPv4")),
    };
    let mut client = crate::dhcp::Client::new(clock::now(), config.client.clone(), config.xid);
    let mut buf = [0u8; crate::dhcp::Client::MAX_DATAGRAM];
    let mut rx = [0u8; 1500];
    loop {
        let now = clock::now();
        client.handle_timeout(now);
        while let Some(t) = client
            .poll_transmit(now, &mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            let mut to = t.remote;
            match to.port() {
                crate::dhcp::server::SERVER_PORT => to.set_port(config.server_port),
                crate::dhcp::server::BOOT_SERVER_PORT => to.set_port(config.boot_port),
                _ => {}
            }
            if t.broadcast {
                to.set_ip(config.broadcast_address);
            }
            tracing::debug!(%to, len = t.len, "dhcp client: send");
            sock.send_to(&buf[..t.len], to)?;
        }
        match client.poll_event() {
            Some(ClientEvent::Bound(info)) => return Ok(info),
            Some(ClientEvent::Failed(why)) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    std::format!("dhcp client gave up: {why:?}"),
                ));
            }
            None => {}
        }
        let wait = client
            .poll_timeout()
            .map(|d| d.saturating_duration_since(clock::now()))
            .unwrap_or(Duration::from_millis(10))
            .clamp(Duration::from_millis(1), Duration::from_millis(500));
        sock.set_read_timeout(Some(wait))?;
        match sock.recv_from(&mut rx) {
            Ok((n, SocketAddr::V4(from))) => client.handle(
                clock::now(),
                Datagram {
                    local,
                    remote: from,
                    payload: &rx[..n],
                },
            ),
            Ok(_) => {}
            Err(e) if no_datagram_yet(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
