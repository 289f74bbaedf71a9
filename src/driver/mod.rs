//! std drivers: the engines on real UDP sockets and files.
pub mod dhcp;
