//! Placeholder for the preboot client (issue 14): the flow (main.rs,
//! flow.rs) comes from the lead; this file only exercises the Linux parts
//! it will use, `hardware.rs` and `linux.rs`.
//!
//! ```sh
//! cargo run --example preboot-client -- --probe        # hardware found under /
//! cargo run --example preboot-client -- --probe ROOT   # ... under a fake tree
//! cargo run --example preboot-client -- --keys         # decode keys for 10 s
//! ```

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
            println!("press keys for 10 s (raw: {})", console.is_raw());
            let end = Instant::now() + Duration::from_secs(10);
            while let Some(k) = linux::read_key(end.saturating_duration_since(Instant::now())) {
                println!("{k} (modifiers {:#x}, code {:#04x})", k.modifiers, k.code);
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: preboot-client --probe [ROOT] | --keys");
            ExitCode::from(2)
        }
    }
}
