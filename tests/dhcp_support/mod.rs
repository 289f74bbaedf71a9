//! Shared by the DHCP tests: the real client/server datagrams in
//! `tests/vectors/` (see `PROVENANCE.md`).

/// The bytes of `tests/vectors/<name>.hex` (hex digits; anything else,
/// such as whitespace, is ignored).
pub fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex: String = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
