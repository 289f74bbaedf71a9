//! `preboot-server --inventory DIR`: the workstation inventory the server
//! keeps (`preboot::driver::registry`), one block per object, every field
//! of the last boot's `WorkstationInfo` (docs/transaction-protocol.md
//! §4.3) by name.

use std::path::Path;
use std::process::ExitCode;

use preboot::driver::registry::{InventoryRecord, read_inventories, read_inventory};
use preboot::wire::image_safe::ImageSafe;

/// Print every record under `dir` (or the one file `dir` names).
pub fn dump(dir: &Path) -> ExitCode {
    let records = if dir.is_file() {
        vec![read_inventory(dir)]
    } else {
        match read_inventories(dir) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let mut ok = true;
    for r in &records {
        match r {
            Ok(r) => print_record(r),
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    println!("{} record(s)", records.len());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_record(r: &InventoryRecord) {
    println!("object {}", r.object);
    println!("  last boot: {} (Unix seconds)", r.seen);
    match r.info() {
        Ok(mut info) => {
            if let Some(bytes) = info.image_safe.take() {
                match ImageSafe::parse(bytes) {
                    Ok(is) => println!("  image-safe data: {is:?}"),
                    Err(e) => println!("  image-safe data: unreadable ({e})"),
                }
            }
            let macs: Vec<String> = info
                .macs
                .iter()
                .map(|m| preboot::policy::WorkstationId::Mac(*m).to_string())
                .collect();
            println!("  MACs: {}", macs.join(", "));
            if let Some(u) = info.uuid {
                println!("  UUID: {}", preboot::policy::WorkstationId::Uuid(u));
            }
            // Every other field by name (fields added to the message later
            // show up here without a change).
            info.macs.clear();
            info.uuid = None;
            println!("  facts: {info:?}");
        }
        Err(e) => println!("  facts unreadable: {e:?}"),
    }
}
