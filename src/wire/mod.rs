//! The wire layer: packets as zero-copy views over bytes, and builders that
//! write packets into caller-provided buffers.
//!
//! Every parse of untrusted bytes returns `Result` and never panics; nothing
//! here allocates. Parse → emit reproduces the bytes for everything a builder
//! can express.

pub mod dhcp;
pub mod disk_scan;
pub mod image_safe;
mod option_table;
pub mod partition_table;
pub mod pxe;
pub mod tftp;
pub mod transaction;
