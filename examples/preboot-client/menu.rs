//! Steps 8–12 on the workstation's console: the hotkey wait and the menu
//! (docs/transaction-protocol.md §4.4).

use std::time::{Duration, Instant};

use crate::linux;

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
    /// Kind 6: register this machine as a workstation object.
    Register,
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
            6 => Choice::Register,
            k => Choice::Other(k),
        }
    }

    /// The entry kind, as `TaskQuery` sends it (§4.5 TLV 1).
    pub fn kind(self) -> u8 {
        match self {
            Choice::Automatic => 1,
            Choice::Maintenance => 2,
            Choice::ImagingPartition(false) => 3,
            Choice::ImagingPartition(true) => 4,
            Choice::BootLocal => 5,
            Choice::Register => 6,
            Choice::Other(k) => k,
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
        6 => "register this machine",
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
        Hotkey::ENTER => parts.push("Enter".into()),
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

/// Wait up to `wait` for `hotkey` on the console (stdin, in raw mode
/// when it is a terminal; a serial console sends function keys and Alt+key
/// as escape sequences, decoded by [`linux::read_key`]). Other keys are
/// ignored; input that ends (a closed pipe) waits out the time.
pub fn wait_for_hotkey(hotkey: &Hotkey, wait: Duration) -> bool {
    let _raw = linux::RawConsole::new();
    let end = Instant::now() + wait;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match linux::read_key(left) {
            Some(k) if k.matches(*hotkey) => return true,
            Some(k) => tracing::debug!(?k, "not the hotkey"),
            None => {
                // End of input or a read error: nothing more will come.
                std::thread::sleep(end.saturating_duration_since(Instant::now()));
                return false;
            }
        }
    }
}

/// How long the menu waits for a choice before it takes the default,
/// when the server names no timeout (§4.4 TLV 8).
pub const CHOICE_WAIT: Duration = Duration::from_secs(30);

/// The entry taken: `preset` (1-based) when given; else, with a console,
/// the digit typed (Enter or the end of `wait` takes the default entry,
/// `default` 0-based, else the first); else the default entry.
pub fn choose(
    entries: &[(u8, String)],
    console: bool,
    preset: Option<usize>,
    default: Option<u8>,
    wait: Duration,
) -> Choice {
    let first = default
        .and_then(|d| entries.get(usize::from(d)))
        .or(entries.first())
        .map_or(Choice::Automatic, |e| Choice::of(e.0));
    if let Some(n) = preset {
        return n
            .checked_sub(1)
            .and_then(|i| entries.get(i))
            .map_or(first, |e| Choice::of(e.0));
    }
    if !console || entries.is_empty() {
        return first;
    }
    println!(
        "choose 1-{} (Enter: {}, taken in {} s)",
        entries.len(),
        usize::from(
            default
                .filter(|d| usize::from(*d) < entries.len())
                .unwrap_or(0)
        ) + 1,
        wait.as_secs()
    );
    let _raw = linux::RawConsole::new();
    let end = Instant::now() + wait;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Some(k) = linux::read_key(left) else {
            return first;
        };
        if k.modifiers == 0 && k.code == linux::Key::ENTER {
            return first;
        }
        if k.modifiers == 0 && k.code.is_ascii_digit() {
            let n = usize::from(k.code - b'0');
            if let Some(e) = n.checked_sub(1).and_then(|i| entries.get(i)) {
                return Choice::of(e.0);
            }
        }
    }
}
