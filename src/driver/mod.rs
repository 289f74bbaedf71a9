//! std drivers: the engines on real UDP sockets and files.
pub mod transaction;
pub mod fs;
pub mod tftp;
pub mod dhcp;
