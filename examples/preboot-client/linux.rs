//! TEMPORARY stand-in (replaced by the Linux helpers).
#![allow(dead_code)]
use std::io;
use std::path::Path;
pub fn kexec(_k: &Path, _i: &Path, _c: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "kexec not built in yet")
}
pub fn dhcp_socket(_iface: &str, _port: u16) -> io::Result<std::net::UdpSocket> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not built in yet",
    ))
}
pub fn interface_up(_iface: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not built in yet",
    ))
}
pub fn set_address(_iface: &str, _a: std::net::Ipv4Addr, _m: std::net::Ipv4Addr) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not built in yet",
    ))
}
pub fn add_default_route(_gw: std::net::Ipv4Addr) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not built in yet",
    ))
}
pub fn mac_of(_iface: &str) -> io::Result<[u8; 6]> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not built in yet",
    ))
}
