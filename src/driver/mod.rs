//! std drivers: the engines on real UDP sockets and files.
pub mod boot_server;
pub mod clients;
pub mod clock;
pub mod config_file;
pub mod dhcp;
pub mod event_loop;
pub mod fs;
pub mod image_safe_disk;
pub mod key_record_disk;
pub mod policy_store;
pub mod privileges;
pub mod registry;
pub mod task_journal;
pub mod tftp;
pub mod transaction;
