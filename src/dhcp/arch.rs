//! Boot selection: which [`BootEntry`] a client gets.
//!
//! The architecture comes from option 93 (RFC 4578 §2.1, first entry), or,
//! when the client sent none, from the `Arch:xxxxx` field of its vendor
//! class (option 60, PXE 2.1 §2.3.1), and is classified by the one
//! architecture table (see [`crate::wire::pxe::ClientArch`]) into a
//! [`BootArch`]: one boot file slot per class. HTTP-boot clients (vendor
//! class `HTTPClient`, UEFI 2.5 §24.7) get the URL of their architecture
//! (`http_x64`, `http_arm64`, …) or else the any-architecture `http_url`.

use super::config::{BootEntry, BootFiles};
use crate::wire::pxe::client_architectures;

/// Generates [`BootArch`] from the rows of the architecture table
/// ([`crate::wire::pxe::ClientArch`]'s module: one row per boot class).
macro_rules! boot_arch {
    ($( $class:ident $key:literal $log:literal $uefi:literal $http:literal $mtftp:literal
        [ $( $value:literal => $variant:ident $name:literal ),* ], )*) => {
        /// The boot class of a client architecture: which boot file it gets.
        /// One per row of the architecture table (IANA "Processor
        /// Architecture Types"; 7 and 9 are both [`BootArch::UefiX64`]),
        /// plus [`BootArch::Http`] for HTTP-boot clients of no known HTTP
        /// architecture, plus [`BootArch::Other`] for unregistered numbers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum BootArch {
            $(
                #[doc = concat!("Configuration key `", $key, "`, log name `", $log, "`",
                    $( "; IANA ", stringify!($value), " (", $name, ")", )* ".")]
                $class,
            )*
            /// Anything else, with its IANA number (no boot file).
            Other(u16),
        }

        impl BootArch {
            /// Every boot class that can have a boot file, in table order
            /// (`BootArch::ALL[i].slot() == Some(i)`).
            pub const ALL: &'static [BootArch] = &[ $( BootArch::$class, )* ];
            /// Number of boot classes in the table.
            pub const COUNT: usize = Self::ALL.len();

            /// Classify an IANA processor architecture type (option 93).
            pub fn from_code(code: u16) -> Self {
                match code {
                    $( $( $value => BootArch::$class, )* )*
                    other => BootArch::Other(other),
                }
            }

            /// The configuration key (`bios`, `uefi_x64`, `http_arm64`,
            /// `http_url`…); `None` for [`BootArch::Other`].
            pub fn key(self) -> Option<&'static str> {
                match self {
                    $( BootArch::$class => Some($key), )*
                    BootArch::Other(_) => None,
                }
            }

            /// The boot class a configuration key names.
            pub fn from_key(key: &str) -> Option<Self> {
                match key {
                    $( $key => Some(BootArch::$class), )*
                    _ => None,
                }
            }

            /// The boot class a log name (`uefi-x64`, …) or a
            /// configuration key names.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $log => Some(BootArch::$class), )*
                    key => Self::from_key(key),
                }
            }

            /// Its index in the table ([`BootArch::ALL`]); `None` for
            /// [`BootArch::Other`].
            pub fn slot(self) -> Option<usize> {
                let mut i = 0usize;
                $(
                    if self == BootArch::$class {
                        return Some(i);
                    }
                    i += 1;
                )*
                let _ = i;
                None
            }

            /// Whether the client runs UEFI firmware.
            pub fn is_uefi(self) -> bool {
                match self {
                    $( BootArch::$class => $uefi, )*
                    BootArch::Other(_) => false,
                }
            }

            /// Whether the client boots over HTTP: its boot file is a URL
            /// and the answer carries vendor class `HTTPClient` (UEFI 2.5
            /// §24.7).
            pub fn is_http(self) -> bool {
                match self {
                    $( BootArch::$class => $http, )*
                    BootArch::Other(_) => false,
                }
            }

            /// Whether PXE MTFTP sub-options (option 43, 1–5) may be sent
            /// to it: BIOS only (EDK2 discards offers that carry them).
            pub fn mtftp(self) -> bool {
                match self {
                    $( BootArch::$class => $mtftp, )*
                    BootArch::Other(_) => false,
                }
            }

            fn log_name(self) -> Option<&'static str> {
                match self {
                    $( BootArch::$class => Some($log), )*
                    BootArch::Other(_) => None,
                }
            }
        }
    };
}

client_architectures!(boot_arch);

/// Short lower-case names for logs, from the architecture table: `bios`,
/// `uefi-ia32`, `uefi-x64`, `uefi-arm32`, `uefi-arm64`, `uefi-riscv64`,
/// `http-x64`, `uboot-arm64`, …, `http` (an HTTP-boot client of no known
/// HTTP architecture), `arch-N` (unregistered IANA number N).
impl core::fmt::Display for BootArch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let BootArch::Other(n) = self {
            return write!(f, "arch-{n}");
        }
        f.write_str(self.log_name().unwrap_or_default())
    }
}

impl From<crate::wire::pxe::ClientArch> for BootArch {
    fn from(a: crate::wire::pxe::ClientArch) -> Self {
        BootArch::from_code(u16::from(a))
    }
}

impl BootArch {
    /// The entry this architecture boots, if configured: its own slot, or
    /// for an HTTP-boot architecture without one, the any-architecture URL
    /// ([`BootArch::Http`], key `http_url`).
    pub fn entry(self, files: &BootFiles) -> Option<&BootEntry> {
        files.get(self).or_else(|| {
            if self.is_http() {
                files.get(BootArch::Http)
            } else {
                None
            }
        })
    }
}

/// What the vendor class (option 60) says about the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// `PXEClient…`
    Pxe,
    /// `HTTPClient…`
    Http,
    /// Anything else or nothing.
    Plain,
}

impl ClientKind {
    /// Classify a vendor class identifier.
    pub fn from_vendor_class(vc: Option<&[u8]>) -> Self {
        match vc {
            Some(v) if v.starts_with(b"PXEClient") => ClientKind::Pxe,
            Some(v) if v.starts_with(b"HTTPClient") => ClientKind::Http,
            _ => ClientKind::Plain,
        }
    }

    /// The option 60 value a server answers with.
    pub fn answer_class(self) -> &'static [u8] {
        match self {
            ClientKind::Http => b"HTTPClient",
            _ => b"PXEClient",
        }
    }
}

/// The `Arch:xxxxx` number inside a vendor class such as
/// `PXEClient:Arch:00007:UNDI:003000`, if well formed.
pub fn arch_from_vendor_class(vc: &[u8]) -> Option<u16> {
    let pos = vc.windows(5).position(|w| w == b"Arch:")?;
    let digits = vc.get(pos + 5..pos + 10)?;
    let mut n: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(d - b'0');
    }
    u16::try_from(n).ok()
}

/// The architecture of a client, from option 93's first entry or else the
/// vendor class. An HTTP-boot vendor class (`HTTPClient`) always classifies
/// as an HTTP architecture: its own when the number is one, else
/// [`BootArch::Http`].
pub fn classify(option93_first: Option<u16>, vendor_class: Option<&[u8]>) -> Option<BootArch> {
    let arch = option93_first
        .or_else(|| vendor_class.and_then(arch_from_vendor_class))
        .map(BootArch::from_code);
    if ClientKind::from_vendor_class(vendor_class) == ClientKind::Http {
        return Some(arch.filter(|a| a.is_http()).unwrap_or(BootArch::Http));
    }
    arch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log name, without an allocator.
    fn name(b: BootArch) -> heapless::String<32> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        write!(s, "{b}").unwrap();
        s
    }

    #[test]
    fn vendor_class_arch_field() {
        // PXE 2.1 §2.3.1: "PXEClient:Arch:xxxxx:UNDI:yyyzzz".
        assert_eq!(
            arch_from_vendor_class(b"PXEClient:Arch:00007:UNDI:003000"),
            Some(7)
        );
        assert_eq!(arch_from_vendor_class(b"PXEClient"), None);
        assert_eq!(arch_from_vendor_class(b"PXEClient:Arch:0x007"), None);
        assert_eq!(arch_from_vendor_class(b"PXEClient:Arch:99999"), None);
    }

    #[test]
    fn option93_wins_over_vendor_class() {
        let vc = b"PXEClient:Arch:00000:UNDI:002001";
        assert_eq!(classify(Some(9), Some(vc)), Some(BootArch::UefiX64));
        assert_eq!(classify(None, Some(vc)), Some(BootArch::Bios));
        assert_eq!(
            classify(Some(16), Some(b"HTTPClient:Arch:00016")),
            Some(BootArch::HttpX64)
        );
        assert_eq!(
            classify(Some(7), Some(b"HTTPClient:Arch:00007")),
            Some(BootArch::Http)
        );
        assert_eq!(classify(None, Some(b"HTTPClient")), Some(BootArch::Http));
        assert_eq!(classify(None, None), None);
    }

    #[test]
    fn table_covers_the_registry() {
        use crate::wire::pxe::ClientArch;
        // Every IANA value has a boot class with a key and a slot.
        for &a in ClientArch::ALL {
            let b = BootArch::from(a);
            assert!(b.slot().is_some(), "{a:?}");
            assert_eq!(b.is_http(), a.is_http(), "{a:?}");
            assert_eq!(b.is_uefi(), a.is_uefi(), "{a:?}");
        }
        assert_eq!(BootArch::from_code(999), BootArch::Other(999));
        assert_eq!(BootArch::Other(999).slot(), None);
        // Slots follow the table, keys and log names are unique and map back.
        for (i, &b) in BootArch::ALL.iter().enumerate() {
            assert_eq!(b.slot(), Some(i));
            let key = b.key().unwrap();
            assert_eq!(BootArch::from_key(key), Some(b));
            assert_eq!(BootArch::from_name(key), Some(b));
            let log = name(b);
            assert_eq!(BootArch::from_name(&log), Some(b));
            for &c in &BootArch::ALL[i + 1..] {
                assert_ne!(c.key(), b.key());
                assert_ne!(name(c), log);
            }
        }
        // Only BIOS may get MTFTP sub-options.
        assert!(
            BootArch::ALL
                .iter()
                .filter(|b| b.mtftp())
                .eq([&BootArch::Bios])
        );
    }

    #[test]
    fn log_names_stay() {
        let names = [
            (BootArch::Bios, "bios"),
            (BootArch::UefiIa32, "uefi-ia32"),
            (BootArch::UefiX64, "uefi-x64"),
            (BootArch::UefiArm32, "uefi-arm32"),
            (BootArch::UefiArm64, "uefi-arm64"),
            (BootArch::Http, "http"),
            (BootArch::Other(77), "arch-77"),
        ];
        for (b, n) in names {
            assert_eq!(name(b), n);
        }
    }

    #[test]
    fn arm32_uboot_is_not_http() {
        assert_eq!(BootArch::from_code(21), BootArch::UbootArm32);
        assert!(!BootArch::from_code(21).is_http());
        assert_eq!(BootArch::from_code(25), BootArch::UefiRiscV32);
        assert_eq!(BootArch::from_code(27), BootArch::UefiRiscV64);
        assert_eq!(BootArch::from_code(9), BootArch::UefiX64);
    }

    #[test]
    fn http_falls_back_to_http_url() {
        let mut f = BootFiles::default();
        f.set(BootArch::Http, BootEntry::tftp("http://s/any.efi"));
        assert_eq!(
            BootArch::HttpArm64.entry(&f).unwrap().file.as_str(),
            "http://s/any.efi"
        );
        f.set(BootArch::HttpArm64, BootEntry::tftp("http://s/aa64.efi"));
        assert_eq!(
            BootArch::HttpArm64.entry(&f).unwrap().file.as_str(),
            "http://s/aa64.efi"
        );
        assert!(BootArch::UefiArm64.entry(&f).is_none());
    }

    #[test]
    fn boot_files_are_a_bounded_map_in_table_order() {
        use super::super::config::MAX_BOOT_FILES;
        let mut f = BootFiles::default();
        assert!(!f.set(BootArch::Other(99), BootEntry::tftp("x")));
        // In reverse: kept in table order all the same.
        for &a in BootArch::ALL[..MAX_BOOT_FILES].iter().rev() {
            assert!(f.set(a, BootEntry::tftp(a.key().unwrap())));
        }
        assert!(
            f.iter()
                .map(|(a, _)| a)
                .eq(BootArch::ALL[..MAX_BOOT_FILES].iter().copied())
        );
        // Full: a new one is refused, a replacement and a removal are not.
        let next = BootArch::ALL[MAX_BOOT_FILES];
        assert!(!f.set(next, BootEntry::tftp("n")));
        assert!(f.get(next).is_none());
        assert!(f.set(BootArch::Bios, BootEntry::tftp("again")));
        assert_eq!(f.get(BootArch::Bios).unwrap().file.as_str(), "again");
        assert!(f.set(BootArch::Bios, None));
        assert!(f.get(BootArch::Bios).is_none());
        assert!(f.set(next, BootEntry::tftp("n")));
    }

    #[test]
    fn uefi_is_known() {
        assert!(!BootArch::Bios.is_uefi());
        assert!(BootArch::from_code(7).is_uefi());
        assert!(BootArch::from_code(11).is_uefi());
    }
}
