//! Configuration files: reading them, and errors that name the file, the
//! line and column, and the full dotted field, in the words of the file's
//! author (the boot server's TOML and the policy store's use it alike).
//! Also the value parsers both files share (MAC, CIDR, hex bytes).

use std::format;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;

use toml::Spanned;

/// A configuration file error: file, line, column, field and what is
/// wrong, shown as `file:line:column: field: message` (`file: message` when
/// the file could not be read, `file: field: message` for a fault of the
/// whole file). The field is the full dotted path (`tftp.timeout_ms`,
/// `dhcp.pool.start`) and the message is written for the file's author,
/// without the parser's type names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field (key) at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let file = self.file.display();
        match (self.line, self.field.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "{file}: {}: {}", self.field, self.message),
            (line, _) => write!(
                f,
                "{file}:{line}:{}: {}: {}",
                self.column, self.field, self.message
            ),
        }
    }
}

/// Read the file at `path`; an unreadable file is an error at line 0 whose
/// message is the whole story: `cannot read /x.toml: No such file or
/// directory` (shared with the boot server's TOML file).
pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        // io::Error shows "... (os error 2)": the number says nothing more.
        let shown = e.to_string();
        let why = match shown.rfind(" (os error ") {
            Some(i) if shown.ends_with(')') => &shown[..i],
            _ => shown.as_str(),
        };
        ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read {}: {why}", path.display()),
        }
    })
}

/// The parser's message (serde and toml wording, with Rust type names) in
/// the words of the file's author.
fn plain_message(msg: &str) -> String {
    let msg = msg.trim();
    let tick = |s: &str| -> Vec<String> {
        s.split('`')
            .skip(1)
            .step_by(2)
            .map(|k| format!("`{k}`"))
            .collect()
    };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (key, allowed) = rest.split_once(", ").unwrap_or((rest, ""));
        let allowed_keys = tick(allowed);
        return match (allowed.starts_with("expected one of"), allowed_keys.len()) {
            (_, 0) => format!("unknown key {key}; no keys are allowed here"),
            (false, 1) => format!(
                "unknown key {key}; the only key allowed here is {}",
                allowed_keys[0]
            ),
            _ => format!(
                "unknown key {key}; the keys allowed here are {}",
                allowed_keys.join(", ")
            ),
        };
    }
    if let Some(key) = msg.strip_prefix("missing field ") {
        return format!("missing key {key}");
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return format!(
                    "expected {}, found {}",
                    plain_expected(expected),
                    plain_found(found)
                );
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        if let Some((n, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, found {n} values", plain_expected(expected));
        }
    }
    msg.to_string()
}

/// What serde expected, in words.
fn plain_expected(e: &str) -> String {
    match e.trim() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "f32" | "f64" => "a number".into(),
        "a string" | "a borrowed string" | "a character" => "a string (in quotes)".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "an array [ ... ]".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table".into(),
        e if e.starts_with("an array of length ") => {
            format!("an array of {} values", &e["an array of length ".len()..])
        }
        e if e.starts_with("a tuple of size ") => {
            format!("an array of {} values", &e["a tuple of size ".len()..])
        }
        e => e.replace('`', ""),
    }
}

/// What serde found, in words.
fn plain_found(f: &str) -> String {
    let f = f.trim();
    let inner = |p: &str| f.strip_prefix(p).map(|v| v.trim_matches('`'));
    if let Some(v) = inner("integer ") {
        return format!("the whole number {v}");
    }
    if let Some(v) = inner("floating point ") {
        return format!("the number {v}");
    }
    if let Some(v) = inner("boolean ") {
        return v.to_string();
    }
    if let Some(v) = f.strip_prefix("string ") {
        return format!("the string {v}");
    }
    match f {
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        "string" => "a string".into(),
        f => f.replace('`', ""),
    }
}

/// Source positions for errors (shared with the boot server's TOML file).
pub(crate) struct Cx<'t> {
    pub(crate) file: &'t Path,
    pub(crate) text: &'t str,
}

impl Cx<'_> {
    /// Stage 1: deserialize the text; a syntax or type error names the key
    /// on its line.
    pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim();
            let mut field = if span.is_empty() && span.start == 0 {
                String::new() // the whole file (a missing top-level table)
            } else {
                self.path_at(span.start)
            };
            if let Some(key) = message.strip_prefix("missing field ") {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key.trim_matches('`'));
            }
            self.err(span, &field, plain_message(message))
        })
    }

    /// The full dotted path of the key at `at` (`tftp.timeout_ms`,
    /// `dhcp.rate_limit.burst`): the table header above it, the key on its
    /// line and, inside an inline table, the key within it. At a header, the
    /// header's table.
    pub(crate) fn path_at(&self, at: usize) -> String {
        let at = at.min(self.text.len());
        let start = self
            .text
            .get(..at)
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = self
            .text
            .get(start..)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        let header = |l: &str| l.trim().trim_matches(['[', ']']).trim().to_string();
        if line.trim_start().starts_with('[') {
            return header(line);
        }
        let before = self.text.get(..start).unwrap_or("");
        let table = before
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .map(header)
            .unwrap_or_default();
        // The key of this line, or (inside a multi-line array) of the line
        // that opened the array.
        let key_of = |l: &str| {
            l.split_once('=')
                .map(|(k, _)| k.trim().to_string())
                .filter(|k| !k.is_empty() && !k.contains(['{', '}', ',', '[', ']']))
        };
        let outer = key_of(line)
            .or_else(|| before.lines().rev().find_map(key_of))
            .unwrap_or_default();
        let prefix = line.get(..at - start).unwrap_or("");
        let inner = prefix.rfind('{').map(|open| {
            let segment = &prefix[open + 1..];
            let segment = segment.rsplit(',').next().unwrap_or(segment);
            match segment.split_once('=') {
                Some((k, _)) => k.trim().to_string(),
                None => line[at - start..]
                    .split(|c: char| c == '=' || c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_string(),
            }
        });
        [table, outer, inner.unwrap_or_default()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    }

    pub(crate) fn line_col(&self, at: usize) -> (usize, usize) {
        let at = at.min(self.text.len());
        let before = self.text.get(..at).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    pub(crate) fn err(
        &self,
        span: Range<usize>,
        field: &str,
        msg: impl core::fmt::Display,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: msg.to_string(),
        }
    }

    pub(crate) fn at<T>(
        &self,
        s: &Spanned<T>,
        field: &str,
        msg: impl core::fmt::Display,
    ) -> ConfigError {
        self.err(s.span(), field, msg)
    }
}

/// Parse `aa:bb:cc…` (or `-` separated) hex bytes, 1..=max of them.
pub(crate) fn parse_hex_bytes(s: &str, max: usize) -> Option<Vec<u8>> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.is_empty() || parts.len() > max {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            if p.len() == 2 {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// Parse a MAC address `52:54:00:12:34:56` (or `-` separated).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    parse_hex_bytes(s, 6).and_then(|b| <[u8; 6]>::try_from(b).ok())
}

/// Parse a machine UUID `01234567-89ab-cdef-0123-456789abcdef` (dashes
/// optional) into its 16 bytes in text order.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parse a subnet `a.b.c.d/len` (len 0-32; host bits not checked).
pub(crate) fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (net, len) = s.split_once('/')?;
    let network = net.trim().parse().ok()?;
    let prefix = len.trim().parse().ok().filter(|p| *p <= 32)?;
    Some((network, prefix))
}
