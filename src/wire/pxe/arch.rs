//! Client system architecture (option 93, RFC 4578 §2.1; values from the
//! IANA "Processor Architecture Types" registry, shared by DHCPv4 option 93
//! and DHCPv6 option 61).
//!
//! [`client_architectures!`] is the one table of architectures in the
//! crate: every layer generates what it needs from it (this module the wire
//! enum [`ClientArch`]; the DHCP engine its boot classes
//! [`BootArch`](crate::dhcp::BootArch), their per-architecture boot file
//! slots, configuration keys and log names). Adding an architecture is one
//! line here.

use crate::wire::dhcp::ListItem;

/// The architecture table. One row per boot architecture: the variant of
/// [`BootArch`](crate::dhcp::BootArch), its configuration key (TOML
/// `[boot]` and `[boot.servers]`, policy conditions), its log name, whether
/// the firmware is UEFI, whether it boots over HTTP (UEFI 2.5 §24.7: a URL
/// as the boot file, vendor class `HTTPClient`), whether PXE MTFTP
/// sub-options may be sent to it (BIOS only: EDK2 discards offers carrying
/// them), and the IANA values (with their wire variants of [`ClientArch`])
/// that boot this way.
///
/// Values 7 and 9: RFC 4578 named 7 "EFI BC" and 9 "EFI x86-64"; erratum
/// 4624 and the IANA registry swapped them (7 "x64 UEFI", 9 "EBC"). x64
/// firmware sends 7 (EDK2, iPXE) and some older firmware 9, so both boot
/// `uefi_x64`.
///
/// The last row, `Http`, has no wire value: an HTTP-boot client (vendor
/// class `HTTPClient`) whose architecture has no HTTP row, and the
/// fallback of every HTTP row (`http_url`).
///
/// Invoke with the name of a macro that takes the rows.
macro_rules! client_architectures {
    ($gen:ident) => {
        $gen! {
            // boot class   key                 log name            uefi   http   mtftp  [IANA value => wire variant]
            Bios            "bios"              "bios"              false  false  true   [0 => X86Bios "x86 BIOS"],
            NecPc98         "nec_pc98"          "nec-pc98"          false  false  false  [1 => NecPc98 "NEC/PC98 (deprecated)"],
            UefiItanium     "uefi_itanium"      "uefi-itanium"      true   false  false  [2 => EfiItanium "Itanium (EFI)"],
            DecAlpha        "dec_alpha"         "dec-alpha"         false  false  false  [3 => DecAlpha "DEC Alpha (deprecated)"],
            ArcX86          "arc_x86"           "arc-x86"           false  false  false  [4 => ArcX86 "Arc x86 (deprecated)"],
            IntelLeanClient "intel_lean_client" "intel-lean-client" false  false  false  [5 => IntelLeanClient "Intel Lean Client (deprecated)"],
            UefiIa32        "uefi_ia32"         "uefi-ia32"         true   false  false  [6 => EfiIa32 "x86 UEFI (IA32)"],
            UefiX64         "uefi_x64"          "uefi-x64"          true   false  false  [7 => EfiBc "x64 UEFI (RFC 4578: EFI BC)", 9 => EfiX64 "EBC (RFC 4578: EFI x86-64)"],
            UefiXscale      "uefi_xscale"       "uefi-xscale"       true   false  false  [8 => EfiXscale "EFI Xscale (deprecated)"],
            UefiArm32       "uefi_arm32"        "uefi-arm32"        true   false  false  [10 => Arm32Uefi "ARM 32-bit UEFI"],
            UefiArm64       "uefi_arm64"        "uefi-arm64"        true   false  false  [11 => Arm64Uefi "ARM 64-bit UEFI"],
            PpcOpenFirmware "ppc_openfirmware"  "ppc-openfirmware"  false  false  false  [12 => PowerPcOpenFirmware "PowerPC Open Firmware"],
            PpcEpapr        "ppc_epapr"         "ppc-epapr"         false  false  false  [13 => PowerPcEpapr "PowerPC ePAPR"],
            PowerOpal       "power_opal"        "power-opal"        false  false  false  [14 => PowerOpalV3 "POWER OPAL v3"],
            HttpIa32        "http_ia32"         "http-ia32"         true   true   false  [15 => X86UefiHttp "x86 UEFI boot from HTTP"],
            HttpX64         "http_x64"          "http-x64"          true   true   false  [16 => X64UefiHttp "x64 UEFI boot from HTTP"],
            HttpEbc         "http_ebc"          "http-ebc"          true   true   false  [17 => EbcHttp "EBC boot from HTTP"],
            HttpArm32       "http_arm32"        "http-arm32"        true   true   false  [18 => Arm32UefiHttp "ARM 32-bit UEFI boot from HTTP"],
            HttpArm64       "http_arm64"        "http-arm64"        true   true   false  [19 => Arm64UefiHttp "ARM 64-bit UEFI boot from HTTP"],
            HttpBios        "http_bios"         "http-bios"         false  true   false  [20 => X86BiosHttp "PC/AT BIOS boot from HTTP"],
            UbootArm32      "uboot_arm32"       "uboot-arm32"       false  false  false  [21 => Arm32Uboot "ARM 32-bit U-Boot"],
            UbootArm64      "uboot_arm64"       "uboot-arm64"       false  false  false  [22 => Arm64Uboot "ARM 64-bit U-Boot"],
            HttpUbootArm32  "http_uboot_arm32"  "http-uboot-arm32"  false  true   false  [23 => Arm32UbootHttp "ARM 32-bit U-Boot boot from HTTP"],
            HttpUbootArm64  "http_uboot_arm64"  "http-uboot-arm64"  false  true   false  [24 => Arm64UbootHttp "ARM 64-bit U-Boot boot from HTTP"],
            UefiRiscV32     "uefi_riscv32"      "uefi-riscv32"      true   false  false  [25 => RiscV32Uefi "RISC-V 32-bit UEFI"],
            HttpRiscV32     "http_riscv32"      "http-riscv32"      true   true   false  [26 => RiscV32UefiHttp "RISC-V 32-bit UEFI boot from HTTP"],
            UefiRiscV64     "uefi_riscv64"      "uefi-riscv64"      true   false  false  [27 => RiscV64Uefi "RISC-V 64-bit UEFI"],
            HttpRiscV64     "http_riscv64"      "http-riscv64"      true   true   false  [28 => RiscV64UefiHttp "RISC-V 64-bit UEFI boot from HTTP"],
            UefiRiscV128    "uefi_riscv128"     "uefi-riscv128"     true   false  false  [29 => RiscV128Uefi "RISC-V 128-bit UEFI"],
            HttpRiscV128    "http_riscv128"     "http-riscv128"     true   true   false  [30 => RiscV128UefiHttp "RISC-V 128-bit UEFI boot from HTTP"],
            S390Basic       "s390_basic"        "s390-basic"        false  false  false  [31 => S390Basic "s390 Basic"],
            S390Extended    "s390_extended"     "s390-extended"     false  false  false  [32 => S390Extended "s390 Extended"],
            UefiMips32      "uefi_mips32"       "uefi-mips32"       true   false  false  [33 => Mips32Uefi "MIPS 32-bit UEFI"],
            UefiMips64      "uefi_mips64"       "uefi-mips64"       true   false  false  [34 => Mips64Uefi "MIPS 64-bit UEFI"],
            UefiSunway32    "uefi_sunway32"     "uefi-sunway32"     true   false  false  [35 => Sunway32Uefi "Sunway 32-bit UEFI"],
            UefiSunway64    "uefi_sunway64"     "uefi-sunway64"     true   false  false  [36 => Sunway64Uefi "Sunway 64-bit UEFI"],
            UefiLoongArch32 "uefi_loongarch32"  "uefi-loongarch32"  true   false  false  [37 => LoongArch32Uefi "LoongArch 32-bit UEFI"],
            HttpLoongArch32 "http_loongarch32"  "http-loongarch32"  true   true   false  [38 => LoongArch32UefiHttp "LoongArch 32-bit UEFI boot from HTTP"],
            UefiLoongArch64 "uefi_loongarch64"  "uefi-loongarch64"  true   false  false  [39 => LoongArch64Uefi "LoongArch 64-bit UEFI"],
            HttpLoongArch64 "http_loongarch64"  "http-loongarch64"  true   true   false  [40 => LoongArch64UefiHttp "LoongArch 64-bit UEFI boot from HTTP"],
            ArmRpiboot      "arm_rpiboot"       "arm-rpiboot"       false  false  false  [41 => ArmRpiboot "ARM rpiboot"],
            Http            "http_url"          "http"              true   true   false  [],
        }
    };
}
pub(crate) use client_architectures;

/// Generates [`ClientArch`] from the rows of [`client_architectures!`]
/// (only the wire columns).
macro_rules! client_arch {
    ($( $class:ident $key:literal $log:literal $uefi:literal $http:literal $mtftp:literal
        [ $( $value:literal => $variant:ident $name:literal ),* ], )*) => {
        /// A client architecture type (option 93; IANA "Processor
        /// Architecture Types"). Unknown values are kept as
        /// [`ClientArch::Unknown`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ClientArch {
            $( $(
                #[doc = concat!(stringify!($value), ": ", $name, ".")]
                $variant,
            )* )*
            /// A value not in this table.
            Unknown(u16),
        }

        impl ClientArch {
            /// Every registered value (in the order of the table's rows).
            pub const ALL: &'static [ClientArch] = &[ $( $( ClientArch::$variant, )* )* ];

            /// Whether the client boots through UEFI (as opposed to BIOS,
            /// U-Boot, Open Firmware...).
            pub fn is_uefi(self) -> bool {
                match self {
                    $( $( ClientArch::$variant => $uefi, )* )*
                    ClientArch::Unknown(_) => false,
                }
            }

            /// Whether this is an HTTP-boot architecture type (the client
            /// expects a URL and answers with vendor class `HTTPClient`).
            pub fn is_http(self) -> bool {
                match self {
                    $( $( ClientArch::$variant => $http, )* )*
                    ClientArch::Unknown(_) => false,
                }
            }

            /// The registry's name of the value (`"x86 BIOS"`, …), `None`
            /// for an unknown one.
            pub fn description(self) -> Option<&'static str> {
                match self {
                    $( $( ClientArch::$variant => Some($name), )* )*
                    ClientArch::Unknown(_) => None,
                }
            }
        }

        impl From<u16> for ClientArch {
            fn from(v: u16) -> Self {
                match v {
                    $( $( $value => Self::$variant, )* )*
                    v => Self::Unknown(v),
                }
            }
        }

        impl From<ClientArch> for u16 {
            fn from(a: ClientArch) -> u16 {
                match a {
                    $( $( ClientArch::$variant => $value, )* )*
                    ClientArch::Unknown(v) => v,
                }
            }
        }
    };
}

client_architectures!(client_arch);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_value_round_trips() {
        // IANA "Processor Architecture Types": 0 to 41, no gaps.
        assert_eq!(ClientArch::ALL.len(), 42);
        for &a in ClientArch::ALL {
            let v = u16::from(a);
            assert_eq!(ClientArch::from(v), a);
            assert!(a.description().is_some());
        }
        for v in 0u16..=41 {
            assert!(
                !matches!(ClientArch::from(v), ClientArch::Unknown(_)),
                "{v}"
            );
        }
        assert_eq!(ClientArch::from(42), ClientArch::Unknown(42));
        assert_eq!(u16::from(ClientArch::Unknown(999)), 999);
    }

    #[test]
    fn arm32_uboot_is_not_http() {
        assert!(!ClientArch::from(21).is_http());
        assert!(!ClientArch::from(21).is_uefi());
        assert!(ClientArch::from(16).is_http());
        assert!(ClientArch::from(27).is_uefi());
        assert!(!ClientArch::X86Bios.is_uefi());
    }
}
