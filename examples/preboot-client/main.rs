//! Placeholder for the preboot client (issue 14): the flow (main.rs,
//! flow.rs) comes from the lead; this file only exercises the Linux parts
//! it will use, `hardware.rs` and `linux.rs`.
//!
//! ```sh
//! cargo run --example preboot-client -- --probe        # hardware found under /
//! cargo run --example preboot-client -- --probe ROOT   # ... under a fake tree
//! cargo run --example preboot-client -- --keys [SECONDS] # decode keys (at most 3)
//! preboot-client --kexec KERNEL INITRD CMDLINE          # hand over (root)
//! ```
//!
//! `vm-check.sh` runs these in a QEMU guest from a static (musl) build.

// The flow will use every item; this placeholder uses some.
#[allow(dead_code)]
mod hardware;
#[cfg(target_os = "linux")]
#[allow(dead_code)]
mod linux;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--probe") => {
            let root = args.get(1).map_or("/", String::as_str);
            let hw = hardware::detect(Path::new(root));
            print!("{hw}");
            let info = hw.to_info();
            println!(
                "WorkstationInfo: {} MACs, {} NICs, {} disks, {} PCI devices",
                info.macs.len(),
                info.nics.len(),
                info.disks_mb.len(),
                info.pci.len()
            );
            ExitCode::SUCCESS
        }
        #[cfg(target_os = "linux")]
        Some("--keys") => {
            let console = match linux::RawConsole::new() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("raw mode: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
            println!("press keys for {secs} s (raw: {})", console.is_raw());
            let end = Instant::now() + Duration::from_secs(secs);
            for _ in 0..3 {
                let Some(k) = linux::read_key(end.saturating_duration_since(Instant::now())) else {
                    break;
                };
                println!(
                    "key: {k} (modifiers {:#x}, code {:#04x})",
                    k.modifiers, k.code
                );
            }
            ExitCode::SUCCESS
        }
        #[cfg(target_os = "linux")]
        Some("--kexec") => {
            let [_, kernel, initrd, cmdline] = &args[..] else {
                eprintln!("usage: preboot-client --kexec KERNEL INITRD CMDLINE");
                return ExitCode::from(2);
            };
            let e = linux::kexec(Path::new(kernel), Path::new(initrd), cmdline);
            eprintln!("kexec failed: {e}");
            ExitCode::FAILURE
        }
        _ => {
            eprintln!(
                "usage: preboot-client --probe [ROOT] | --keys [SECONDS] | --kexec KERNEL INITRD CMDLINE"
            );
            ExitCode::from(2)
        }
    }
}
