//! PXE 2.1 vendor options (option 43) and client identity (RFC 4578).
//!
//! - [`PxeOption`] / [`PxeOptions`]: the sub-options of option 43 typed
//!   both ways (PXE 2.1 §2.4, table 2-1), including the little-endian MTFTP
//!   ports ([`MtftpPort`]), discovery control bits, boot servers, boot
//!   menu, menu prompt and boot item, and this project's vendor-range
//!   sub-options 128 (transaction server address and port) and 129 (its
//!   X25519 public key).
//! - [`ClientArch`]: option 93 values (IANA registry), [`Ndi`]: option 94,
//!   [`MachineId`]: option 97 (with the UUID/GUID byte-order note).
//! - [`VendorClass`]: `PXEClient:Arch:xxxxx:UNDI:yyyzzz` and
//!   `HTTPClient:…` strings (option 60) in parts, both ways.
//!
//! Option 43 as dnsmasq sends it in a proxy offer (PXE 2.1 §2.4):
//! ```text
//! 06 01 03                      discovery control: no bcast, no mcast
//! 0a 04 00 'P' 'X' 'E'          menu prompt: timeout 0, "PXE"
//! 08 07 80 00 01 c0 a8 4d 01    boot servers: type 0x8000, 1 address
//! 09 10 80 00 0d "e2e BIOS boot" boot menu: type 0x8000, 13-byte text
//! ff                            PXE_END
//! ```
//!
//! ```
//! use preboot::wire::dhcp::OptionData;
//! use preboot::wire::pxe::{MenuPrompt, PromptTimeout, PxeOption, PxeOptions, MtftpPort};
//! let opts = [
//!     PxeOption::MtftpServerPort(MtftpPort(1759)),
//!     PxeOption::MenuPrompt(MenuPrompt { timeout: PromptTimeout::Seconds(5), prompt: OptionData::new(b"F8") }),
//! ];
//! let mut buf = [0u8; 64];
//! let n = PxeOptions::emit(&opts, &mut buf).unwrap();
//! assert_eq!(&buf[..n], &[3, 2, 0xdf, 0x06, 10, 3, 5, b'F', b'8', 255]);
//! assert!(PxeOptions::new(OptionData::new(&buf[..n])).eq(opts));
//! ```

mod arch;
mod identity;
mod options;

pub use arch::ClientArch;
pub(crate) use arch::client_architectures;
pub use identity::{ClientKind, MachineId, Ndi, UndiVersion, UuidDisplay, VendorClass};
pub use options::{
    BootItem, BootMenu, BootMenuItem, BootServer, BootServers, CredentialTypes, DiscoveryControl,
    Entries, Entry, McastAddrsAlloc, MenuPrompt, MtftpPort, PromptTimeout, PxeOption, PxeOptions,
    code,
};
