//! Registering workstations (issue 15, "Registration and inventory";
//! ZENworks' server policy registered unknown workstations, notes §1.5):
//! the server policy's `register` setting with its name template, the
//! names it makes, and the [`Registry`] that makes registrations and
//! inventories durable (the std driver `driver::registry` keeps them in
//! `server.state_dir`).
//!
//! A workstation is registered when its session's object is unknown to
//! the store and either the server policy registers unknown workstations
//! (at its `WorkstationInfo`, §4.3) or the user chose "register this
//! machine" in the menu (`MenuChoice` 6, §4.5). The new object has the
//! session's identity (§3.4) and the templated name, and no attributes.

use super::model::{WorkstationId, WorkstationObject};
use crate::wire::transaction::messages::WorkstationInfo;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::Ipv4Addr;

/// The server policy's "register unknown workstations" setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterSetting {
    /// Register every unknown workstation at its `WorkstationInfo`
    /// (`false`: only from the menu).
    pub automatic: bool,
    /// Name template: `{mac}`, `{uuid}`, `{serial}`, `{n}` ([`expand_name`]).
    pub name: String,
}

impl RegisterSetting {
    /// The template used from the menu when the server policy has none.
    pub const DEFAULT_TEMPLATE: &'static str = "ws-{mac}";
}

/// Longest object name (the `InfoAck` name, §4.3).
pub const MAX_NAME_LEN: usize = 64;

/// A name template that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{…}` that is not one of the placeholders.
    #[error("unknown placeholder {{{0}}}: use {{mac}}, {{uuid}}, {{serial}} or {{n}}")]
    UnknownPlaceholder(String),
    /// A `{` without its `}`.
    #[error("a '{{' without its '}}'")]
    Unclosed,
    /// Empty template.
    #[error("empty name template")]
    Empty,
}

/// Check a template (at load time).
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    if template.is_empty() {
        return Err(TemplateError::Empty);
    }
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let j = after.find('}').ok_or(TemplateError::Unclosed)?;
        let name = &after[..j];
        if !matches!(name, "mac" | "uuid" | "serial" | "n") {
            return Err(TemplateError::UnknownPlaceholder(name.into()));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}

/// The name `template` gives workstation `who` with `info`, number `n`:
/// `{mac}` is the first MAC as 12 lowercase hex digits (`525400000001`,
/// ZENworks' form), `{uuid}` the machine UUID as text (else the MAC),
/// `{serial}` the SMBIOS system serial number (none is sent yet: the
/// UUID, else the MAC), `{n}` the number `n`. Cut to [`MAX_NAME_LEN`]
/// bytes (at a character boundary). Unknown placeholders are kept as
/// written ([`check_template`] refuses them at load).
pub fn expand_name(
    template: &str,
    who: &WorkstationId,
    info: &WorkstationInfo<'_>,
    n: u32,
) -> String {
    let mac = info.macs.first().copied().or(match who {
        WorkstationId::Mac(m) => Some(*m),
        WorkstationId::Uuid(_) => None,
    });
    let mac_text = mac.map_or_else(
        || format!("{who}"),
        |m| {
            let mut s = String::new();
            for b in m {
                let _ = write!(s, "{b:02x}");
            }
            s
        },
    );
    let uuid = info.uuid.or(match who {
        WorkstationId::Uuid(u) => Some(*u),
        WorkstationId::Mac(_) => None,
    });
    let uuid_text = uuid.map_or_else(
        || mac_text.clone(),
        |u| format!("{}", WorkstationId::Uuid(u)),
    );
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        match &after[..j] {
            "mac" => out.push_str(&mac_text),
            "uuid" | "serial" => out.push_str(&uuid_text),
            "n" => {
                let _ = write!(out, "{n}");
            }
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    let mut cut = out.len().min(MAX_NAME_LEN);
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}

/// A registration or an inventory could not be made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the registry could not be written")]
pub struct RegistryFailed;

/// Where registrations and inventories are kept (the std driver keeps
/// them in files in `server.state_dir`). Calls come from the imaging
/// proxy, at most once per request (§6).
pub trait Registry: core::fmt::Debug + Send {
    /// `object` was registered: make it durable before it is answered
    /// (an `Err` refuses the registration; nothing changes).
    fn registered(&mut self, object: &WorkstationObject) -> Result<(), RegistryFailed>;
    /// The hardware facts of `object` at this boot: the accepted
    /// `WorkstationInfo` as its payload bytes (§4.3), so that every field
    /// the message carries, new ones included, is kept. One record per
    /// object, replaced at each boot.
    fn inventory(&mut self, object: &WorkstationId, info: &[u8]) -> Result<(), RegistryFailed>;
    /// The IP pool's assignments kept so far ([`super::IpPool`]).
    fn ip_assignments(&self) -> Vec<(WorkstationId, Ipv4Addr)> {
        Vec::new()
    }
    /// `object` was given `address` from the pool: make it durable before
    /// it is answered (an `Err` sends no address).
    fn ip_assigned(
        &mut self,
        object: &WorkstationId,
        address: Ipv4Addr,
    ) -> Result<(), RegistryFailed> {
        let _ = (object, address);
        Err(RegistryFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mac: [u8; 6], uuid: Option<[u8; 16]>) -> WorkstationInfo<'static> {
        let mut i = WorkstationInfo::default();
        i.macs.push(mac).unwrap();
        i.uuid = uuid;
        i
    }

    /// The placeholders of the `register` name template.
    #[test]
    fn templated_names() {
        let mac = [0x52, 0x54, 0, 0xab, 0, 1];
        let who = WorkstationId::Mac(mac);
        let i = info(mac, None);
        assert_eq!(expand_name("lab-{mac}", &who, &i, 1), "lab-525400ab0001");
        assert_eq!(expand_name("pc{n}-{mac}", &who, &i, 7), "pc7-525400ab0001");
        assert_eq!(expand_name("{uuid}", &who, &i, 1), "525400ab0001");
        let u = [0x11; 16];
        let i = info(mac, Some(u));
        assert_eq!(
            expand_name("x-{serial}", &who, &i, 1),
            "x-11111111-1111-1111-1111-111111111111"
        );
        assert_eq!(expand_name(&"é".repeat(40), &who, &i, 1).len(), 64);
        assert_eq!(check_template("lab-{mac}-{n}"), Ok(()));
        assert_eq!(
            check_template("lab-{host}"),
            Err(TemplateError::UnknownPlaceholder("host".into()))
        );
        assert_eq!(check_template("lab-{mac"), Err(TemplateError::Unclosed));
        assert_eq!(check_template(""), Err(TemplateError::Empty));
    }
}
