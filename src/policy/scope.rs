//! Which requests and rules apply to a workstation, as ZENworks scoped
//! them (docs/policy.md, "When can a restore happen?"; notes §1.5):
//!
//! - the **workstation policy's** rules apply only to a *registered*
//!   workstation flagged "image on next boot" (the object's attribute or
//!   the image-safe data's pending flag), and only to pick the image when
//!   the object names none;
//! - the **server policy's** rules apply only to *unregistered*
//!   workstations (how a new machine gets its first image);
//! - a registered workstation that is not flagged gets no restore and no
//!   multicast join by rule, whatever its image-safe data says (missing,
//!   damaged, another image);
//! - a capture asked for the workstation comes first: no restore and no
//!   join as a member while it is decided (docs/policy.md, "Capture
//!   before restore").
//!
//! The image-safe pending flags (§10.2 field 10) are the workstation's own
//! requests; "imaging partition disabled" switches off what a rule alone
//! would decide for it (server-policy rules, multicast member rules).

use super::condition::Facts;
use super::model::{ServerPolicy, WorkstationId, WorkstationObject};
use crate::wire::image_safe::PendingFlags;
use alloc::string::String;
use core::fmt::Write as _;

/// What the workstation and its object ask for, and what may apply to it
/// (pure: from the object and the image-safe data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// A workstation object names it.
    pub registered: bool,
    /// "Image on next boot": the object's attribute.
    pub object_flag: bool,
    /// "Image on next boot": the image-safe data's pending flag.
    pub image_safe_flag: bool,
    /// A capture is asked (the object's "create an image" or the pending
    /// flag): it comes before any restore.
    pub capture: bool,
    /// Maintenance is asked (the object's attribute or the pending flag).
    pub maintenance: bool,
    /// The imaging partition is disabled (pending flag): nothing is decided
    /// from a rule alone.
    pub partition_disabled: bool,
}

impl Scope {
    /// The scope of a workstation with object `obj` (if registered) and
    /// the image-safe data in `facts`.
    pub fn of(obj: Option<&WorkstationObject>, facts: &Facts<'_>) -> Scope {
        let p = facts.pending;
        Scope {
            registered: obj.is_some(),
            object_flag: obj.is_some_and(|o| o.image_next_boot),
            image_safe_flag: p.has(PendingFlags::IMAGE_NEXT_BOOT),
            capture: obj.is_some_and(|o| o.create_image.is_some())
                || p.has(PendingFlags::CREATE_IMAGE),
            maintenance: obj.is_some_and(|o| o.maintenance) || p.has(PendingFlags::MAINTENANCE),
            partition_disabled: p.has(PendingFlags::IMAGING_PARTITION_DISABLED),
        }
    }

    /// Flagged "image on next boot" (either way).
    pub fn flagged(&self) -> bool {
        self.object_flag || self.image_safe_flag
    }

    /// May a rule alone (an imaging rule, a multicast member rule) put
    /// an image on this disk? Registered: only when flagged. Unregistered:
    /// unless the imaging partition is disabled (and not flagged).
    pub fn rules_apply(&self) -> bool {
        if self.registered {
            self.flagged()
        } else {
            self.flagged() || !self.partition_disabled
        }
    }

    /// May anything overwrite the disk on this boot? Not while a capture
    /// is asked: the capture runs first, the restore after it succeeded.
    pub fn destructive_allowed(&self) -> bool {
        !self.capture
    }
}

/// The upload target for a capture the image-safe data asks for: the
/// object's own target, else the server policy's template with `{id}`
/// (the identity: a MAC as 12 hex digits, a UUID as 32) and `{name}` (the
/// object's name, else the identity) filled in. Characters other than
/// ASCII letters, digits, `.`, `-` and `_` in a name become `_`, so a
/// name cannot climb out of the template's directory. `None` when neither
/// names one.
pub(crate) fn upload_target(
    server: &ServerPolicy,
    obj: Option<&WorkstationObject>,
    id: &WorkstationId,
) -> Option<String> {
    if let Some(t) = obj.and_then(|o| o.create_image.clone()) {
        return Some(t);
    }
    let template = server.upload_target.as_deref()?;
    let mut ident = String::new();
    match id {
        WorkstationId::Mac(m) => m.iter().for_each(|b| {
            let _ = write!(ident, "{b:02x}");
        }),
        WorkstationId::Uuid(u) => u.iter().for_each(|b| {
            let _ = write!(ident, "{b:02x}");
        }),
    }
    let name: String = match obj {
        Some(o) if !o.name.is_empty() => o
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        _ => ident.clone(),
    };
    // A name of dots only would be `.` or `..`.
    let name = if name.chars().all(|c| c == '.') {
        ident.clone()
    } else {
        name
    };
    Some(template.replace("{id}", &ident).replace("{name}", &name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// docs/policy.md: `{id}` and `{name}` fill in; a name cannot climb
    /// out of the template's directory.
    #[test]
    fn upload_target_template() {
        let server = ServerPolicy {
            upload_target: Some("uploads/{name}-{id}.img".into()),
            ..ServerPolicy::default()
        };
        let id = WorkstationId::Mac([0x52, 0x54, 0, 0, 0, 0x0a]);
        assert_eq!(
            upload_target(&server, None, &id).as_deref(),
            Some("uploads/52540000000a-52540000000a.img")
        );
        let mut o = WorkstationObject::new(id, "../../etc/x y");
        assert_eq!(
            upload_target(&server, Some(&o), &id).as_deref(),
            Some("uploads/.._.._etc_x_y-52540000000a.img")
        );
        o.name = "..".to_string();
        assert_eq!(
            upload_target(&server, Some(&o), &id).as_deref(),
            Some("uploads/52540000000a-52540000000a.img")
        );
        o.create_image = Some("mine.img".into());
        assert_eq!(
            upload_target(&server, Some(&o), &id).as_deref(),
            Some("mine.img")
        );
        assert_eq!(upload_target(&ServerPolicy::default(), None, &id), None);
    }
}
