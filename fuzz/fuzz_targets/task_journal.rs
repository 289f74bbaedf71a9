//! The task journal's reader (docs/transaction-protocol.md §4.8,
//! `driver::task_journal`) on arbitrary bytes: no panic; what it reads
//! written out again line by line reads back the same (records, next id).
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::driver::task_journal::{HEADER, record_line, replay_bytes};
use std::path::Path;

fuzz_target!(|input: &[u8]| {
    // Half the inputs start with the header so the line parser is reached.
    let mut data = Vec::new();
    if input.first().is_some_and(|b| b & 1 == 1) {
        data.extend_from_slice(HEADER.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(&input[1..]);
    } else {
        data.extend_from_slice(input);
    }
    let Ok(replay) = replay_bytes(Path::new("fuzz.journal"), &data) else {
        return;
    };
    let mut again = format!("{HEADER}\n");
    for r in &replay.records {
        again.push_str(&record_line(r));
        again.push('\n');
    }
    let back = replay_bytes(Path::new("again.journal"), again.as_bytes())
        .expect("a journal written from read records reads");
    assert_eq!(back.records, replay.records);
    assert_eq!(back.torn, None);
});
