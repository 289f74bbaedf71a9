//! Client system architecture (option 93, RFC 4578 §2.1; values from the
//! IANA "Processor Architecture Types" registry).

use crate::wire::dhcp::ListItem;

macro_rules! client_arch {
    ($( $(#[$doc:meta])* $value:literal => $variant:ident, )*) => {
        /// A client architecture type (IANA registry). Unknown values are
        /// kept as [`ClientArch::Unknown`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ClientArch {
            $( $(#[$doc])* $variant, )*
            /// A value not in this table.
            Unknown(u16),
        }

        impl From<u16> for ClientArch {
            fn from(v: u16) -> Self {
                match v {
                    $( $value => Self::$variant, )*
                    v => Self::Unknown(v),
                }
            }
        }

        impl From<ClientArch> for u16 {
            fn from(a: ClientArch) -> u16 {
                match a {
                    $( ClientArch::$variant => $value, )*
                    ClientArch::Unknown(v) => v,
                }
            }
        }
    };
}

client_arch! {
    /// 0: x86 BIOS (Intel x86PC).
    0 => X86Bios,
    /// 1: NEC/PC98.
    1 => NecPc98,
    /// 2: EFI Itanium.
    2 => EfiItanium,
    /// 3: DEC Alpha.
    3 => DecAlpha,
    /// 4: Arc x86.
    4 => ArcX86,
    /// 5: Intel Lean Client.
    5 => IntelLeanClient,
    /// 6: EFI IA32.
    6 => EfiIa32,
    /// 7: EFI BC (byte code; used by EDK2/OVMF for x86-64 PXE).
    7 => EfiBc,
    /// 8: EFI Xscale.
    8 => EfiXscale,
    /// 9: EFI x86-64.
    9 => EfiX64,
    /// 10: ARM 32-bit UEFI.
    10 => Arm32Uefi,
    /// 11: ARM 64-bit UEFI.
    11 => Arm64Uefi,
    /// 12: PowerPC Open Firmware.
    12 => PowerPcOpenFirmware,
    /// 13: PowerPC ePAPR.
    13 => PowerPcEpapr,
    /// 14: POWER OPAL v3.
    14 => PowerOpalV3,
    /// 15: x86 UEFI HTTP boot.
    15 => X86UefiHttp,
    /// 16: x64 UEFI HTTP boot.
    16 => X64UefiHttp,
    /// 17: EBC UEFI HTTP boot.
    17 => EbcHttp,
    /// 18: ARM 32-bit UEFI HTTP boot.
    18 => Arm32UefiHttp,
    /// 19: ARM 64-bit UEFI HTTP boot.
    19 => Arm64UefiHttp,
    /// 20: PC/AT BIOS HTTP boot.
    20 => X86BiosHttp,
    /// 21: ARM 32-bit U-Boot.
    21 => Arm32Uboot,
    /// 22: ARM 64-bit U-Boot.
    22 => Arm64Uboot,
    /// 23: ARM 32-bit U-Boot HTTP boot.
    23 => Arm32UbootHttp,
    /// 24: ARM 64-bit U-Boot HTTP boot.
    24 => Arm64UbootHttp,
    /// 25: RISC-V 32-bit UEFI.
    25 => RiscV32Uefi,
    /// 26: RISC-V 32-bit UEFI HTTP boot.
    26 => RiscV32UefiHttp,
    /// 27: RISC-V 64-bit UEFI.
    27 => RiscV64Uefi,
    /// 28: RISC-V 64-bit UEFI HTTP boot.
    28 => RiscV64UefiHttp,
}

impl ClientArch {
    /// Whether the client boots through UEFI (as opposed to BIOS, U-Boot,
    /// Open Firmware...).
    pub fn is_uefi(self) -> bool {
        matches!(
            self,
            Self::EfiItanium
                | Self::EfiIa32
                | Self::EfiBc
                | Self::EfiXscale
                | Self::EfiX64
                | Self::Arm32Uefi
                | Self::Arm64Uefi
                | Self::X86UefiHttp
                | Self::X64UefiHttp
                | Self::EbcHttp
                | Self::Arm32UefiHttp
                | Self::Arm64UefiHttp
                | Self::RiscV32Uefi
                | Self::RiscV32UefiHttp
                | Self::RiscV64Uefi
                | Self::RiscV64UefiHttp
        )
    }

    /// Whether this is an HTTP-boot architecture type (the client expects
    /// a URL and vendor class `HTTPClient`).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::X86UefiHttp
                | Self::X64UefiHttp
                | Self::EbcHttp
                | Self::Arm32UefiHttp
                | Self::Arm64UefiHttp
                | Self::X86BiosHttp
                | Self::Arm32UbootHttp
                | Self::Arm64UbootHttp
                | Self::RiscV32UefiHttp
                | Self::RiscV64UefiHttp
        )
    }
}

impl ListItem for ClientArch {
    const SIZE: usize = 2;
    fn read(b: &[u8]) -> Self {
        ClientArch::from(u16::from_be_bytes([b[0], b[1]]))
    }
    fn write(&self) -> [u8; 4] {
        let [a, b] = u16::from(*self).to_be_bytes();
        [a, b, 0, 0]
    }
}
