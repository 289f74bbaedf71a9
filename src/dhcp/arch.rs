//! Boot selection: which [`BootEntry`] a client gets.
//!
//! The architecture comes from option 93 (RFC 4578 §2.1, first entry), or,
//! when the client sent none, from the `Arch:xxxxx` field of its vendor
//! class (option 60, PXE 2.1 §2.3.1). HTTP-boot clients (vendor class
//! `HTTPClient`, UEFI 2.5 §24.7) get the URL whatever their processor.

use super::config::{BootEntry, BootFiles};

/// The boot-relevant class of a client architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootArch {
    /// x86 BIOS (0).
    Bios,
    /// UEFI IA32 (6).
    UefiIa32,
    /// UEFI x64 (7, 9).
    UefiX64,
    /// UEFI ARM 32-bit (10).
    UefiArm32,
    /// UEFI ARM64 (11).
    UefiArm64,
    /// UEFI HTTP boot (15, 16, 18, 19, … or vendor class `HTTPClient`).
    Http,
    /// Anything else, with its IANA number.
    Other(u16),
}

/// Short lower-case names for logs: `bios`, `uefi-ia32`, `uefi-x64`,
/// `uefi-arm32`, `uefi-arm64`, `http`, `arch-N` (IANA number N).
impl core::fmt::Display for BootArch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootArch::Bios => f.write_str("bios"),
            BootArch::UefiIa32 => f.write_str("uefi-ia32"),
            BootArch::UefiX64 => f.write_str("uefi-x64"),
            BootArch::UefiArm32 => f.write_str("uefi-arm32"),
            BootArch::UefiArm64 => f.write_str("uefi-arm64"),
            BootArch::Http => f.write_str("http"),
            BootArch::Other(n) => write!(f, "arch-{n}"),
        }
    }
}

impl BootArch {
    /// Classify an IANA processor architecture type (option 93).
    pub fn from_code(code: u16) -> Self {
        match code {
            0 => BootArch::Bios,
            6 => BootArch::UefiIa32,
            7 | 9 => BootArch::UefiX64,
            10 => BootArch::UefiArm32,
            11 => BootArch::UefiArm64,
            15 | 16 | 18 | 19 | 20 | 21 => BootArch::Http,
            other => BootArch::Other(other),
        }
    }

    /// Whether the client runs UEFI firmware (and so must never see MTFTP
    /// sub-options 1–5: EDK2 discards such offers).
    pub fn is_uefi(self) -> bool {
        !matches!(self, BootArch::Bios | BootArch::Other(_))
    }

    /// The entry this architecture boots, if configured.
    pub fn entry(self, files: &BootFiles) -> Option<&BootEntry> {
        match self {
            BootArch::Bios => files.bios.as_ref(),
            BootArch::UefiIa32 => files.uefi_ia32.as_ref(),
            BootArch::UefiX64 => files.uefi_x64.as_ref(),
            BootArch::UefiArm32 => files.uefi_arm32.as_ref(),
            BootArch::UefiArm64 => files.uefi_arm64.as_ref(),
            BootArch::Http => files.http_url.as_ref(),
            BootArch::Other(_) => None,
        }
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
/// vendor class; HTTP-boot vendor classes always classify as [`BootArch::Http`].
pub fn classify(option93_first: Option<u16>, vendor_class: Option<&[u8]>) -> Option<BootArch> {
    if ClientKind::from_vendor_class(vendor_class) == ClientKind::Http {
        return Some(BootArch::Http);
    }
    option93_first
        .or_else(|| vendor_class.and_then(arch_from_vendor_class))
        .map(BootArch::from_code)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Some(BootArch::Http)
        );
        assert_eq!(classify(None, None), None);
    }

    #[test]
    fn uefi_is_known() {
        assert!(!BootArch::Bios.is_uefi());
        assert!(BootArch::from_code(7).is_uefi());
        assert!(BootArch::from_code(11).is_uefi());
    }
}
