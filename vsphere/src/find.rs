//! Finding a virtual machine from what an administrator types after `--vm`.
//!
//! Nouns: [`VmSelector`] (a name anywhere in the inventory, an inventory
//! path, a moref, a BIOS UUID, an instance UUID, or a UUID that may be
//! either). Shapes are recognised without a prefix (`vm-42` is a moref,
//! 8-4-4-4-12 hex is a UUID, anything with a `/` is a path, the rest a
//! name); the prefixes `moref=`, `uuid=`, `instance-uuid=`, `path=` and
//! `name=` force a kind.
//!
//! Invariants: the answer is exactly one VirtualMachine or an error —
//! [`Error::VmNotFound`] when nothing matches (also a moref of another type),
//! [`Error::VmAmbiguous`] naming every candidate when several do, never the
//! first one. UUIDs go through `SearchIndex.FindAllByUuid` over the whole
//! inventory, because clones share a BIOS UUID; a bare UUID is looked up
//! as both kinds and is ambiguous when the two answers differ.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::soap::MoRef;
use crate::xml::escape;

/// How to find a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmSelector {
    /// Name, anywhere in the inventory.
    Name(String),
    /// Inventory path, e.g. `/DC0/vm/folder/web-01`.
    InventoryPath(String),
    /// Managed object id, e.g. `vm-42`.
    MoRef(String),
    /// BIOS UUID (`config.uuid`).
    BiosUuid(String),
    /// Instance UUID (`config.instanceUuid`).
    InstanceUuid(String),
    /// A UUID that may be either the BIOS or the instance UUID.
    Uuid(String),
}

/// Whether `s` has the 8-4-4-4-12 hex shape of a UUID (any case).
pub fn is_uuid_shape(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `s` has the shape of a VM moref, `vm-<digits>`.
pub fn is_vm_moref_shape(s: &str) -> bool {
    s.strip_prefix("vm-")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// vSphere reports UUIDs in lower case; one typed in upper case is the same.
fn uuid_key(s: &str) -> String {
    if is_uuid_shape(s) {
        s.to_ascii_lowercase()
    } else {
        s.to_string()
    }
}

impl VmSelector {
    /// Parses a `--vm` argument: an explicit prefix first, then the shapes
    /// moref, UUID, path (contains `/`), and finally a name.
    pub fn parse(s: &str) -> VmSelector {
        if let Some(v) = s.strip_prefix("moref=") {
            VmSelector::MoRef(v.to_string())
        } else if let Some(v) = s.strip_prefix("uuid=") {
            VmSelector::BiosUuid(uuid_key(v))
        } else if let Some(v) = s.strip_prefix("instance-uuid=") {
            VmSelector::InstanceUuid(uuid_key(v))
        } else if let Some(v) = s.strip_prefix("path=") {
            VmSelector::InventoryPath(v.to_string())
        } else if let Some(v) = s.strip_prefix("name=") {
            VmSelector::Name(v.to_string())
        } else if is_vm_moref_shape(s) {
            VmSelector::MoRef(s.to_string())
        } else if is_uuid_shape(s) {
            VmSelector::Uuid(uuid_key(s))
        } else if s.contains('/') {
            VmSelector::InventoryPath(s.to_string())
        } else {
            VmSelector::Name(s.to_string())
        }
    }
}

impl std::fmt::Display for VmSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmSelector::Name(v) => write!(f, "name {v:?}"),
            VmSelector::InventoryPath(v) => write!(f, "inventory path {v:?}"),
            VmSelector::MoRef(v) => write!(f, "moref {v}"),
            VmSelector::BiosUuid(v) => write!(f, "BIOS UUID {v}"),
            VmSelector::InstanceUuid(v) => write!(f, "instance UUID {v}"),
            VmSelector::Uuid(v) => write!(f, "UUID {v} (BIOS or instance)"),
        }
    }
}

impl Client {
    /// Finds exactly one VM.
    pub fn find_vm(&self, sel: &VmSelector) -> Result<MoRef> {
        let hits = match sel {
            VmSelector::Name(name) => self
                .retrieve_all("VirtualMachine", &["name"])?
                .into_iter()
                .filter(|oc| oc.text("name") == Some(name.as_str()))
                .map(|oc| oc.obj)
                .collect(),
            VmSelector::InventoryPath(path) => {
                let params = format!(
                    "{}<inventoryPath>{}</inventoryPath>",
                    self.sc.search_index.to_xml("_this"),
                    escape(path.trim_start_matches('/'))
                );
                let (_, resp) = self.call("FindByInventoryPath", &params)?;
                resp.child("returnval")
                    .and_then(MoRef::from_element)
                    .into_iter()
                    .collect()
            }
            VmSelector::MoRef(v) => {
                let m = MoRef::new("VirtualMachine", v);
                match self.retrieve_one(&m, &["name"]) {
                    Ok(Some(oc)) if oc.get("name").is_some() => vec![m],
                    Ok(_) => Vec::new(),
                    // A moref of another type may be refused as a bad argument.
                    Err(Error::Fault { kind, .. })
                        if kind == "InvalidArgument" || kind == "InvalidType" =>
                    {
                        Vec::new()
                    }
                    Err(e) => return Err(e),
                }
            }
            VmSelector::BiosUuid(u) => self.find_all_by_uuid(u, false)?,
            VmSelector::InstanceUuid(u) => self.find_all_by_uuid(u, true)?,
            VmSelector::Uuid(u) => {
                let mut both = self.find_all_by_uuid(u, false)?;
                both.extend(self.find_all_by_uuid(u, true)?);
                both
            }
        };
        self.exactly_one(sel, hits)
    }

    /// `SearchIndex.FindAllByUuid` over the whole inventory (datacenter unset).
    fn find_all_by_uuid(&self, uuid: &str, instance: bool) -> Result<Vec<MoRef>> {
        let params = format!(
            "{}<uuid>{}</uuid><vmSearch>true</vmSearch><instanceUuid>{instance}</instanceUuid>",
            self.sc.search_index.to_xml("_this"),
            escape(uuid)
        );
        let (_, resp) = self.call("FindAllByUuid", &params)?;
        Ok(resp
            .children_named("returnval")
            .filter_map(MoRef::from_element)
            .collect())
    }

    /// The one VM among `hits`, or the error that says why not.
    fn exactly_one(&self, sel: &VmSelector, hits: Vec<MoRef>) -> Result<MoRef> {
        let mut hits: Vec<MoRef> = hits
            .into_iter()
            .filter(|m| m.kind == "VirtualMachine")
            .collect();
        hits.sort();
        hits.dedup();
        match hits.len() {
            0 => Err(Error::VmNotFound {
                selector: sel.to_string(),
            }),
            1 => Ok(hits.remove(0)),
            _ => Err(Error::VmAmbiguous {
                selector: sel.to_string(),
                candidates: hits.iter().map(|m| self.describe_vm(m)).collect(),
            }),
        }
    }

    /// `vm-42 (/DC0/vm/folder/web-01)`, or `vm-42` when the path cannot be read.
    fn describe_vm(&self, vm: &MoRef) -> String {
        match self.inventory_path(vm) {
            Ok(path) => format!("{} ({path})", vm.value),
            Err(e) => {
                log::debug!("inventory path of {vm}: {e}");
                vm.value.clone()
            }
        }
    }

    /// The inventory path of an entity, as FindByInventoryPath takes it
    /// (with a leading `/`; the root folder itself has no name in it).
    pub fn inventory_path(&self, obj: &MoRef) -> Result<String> {
        let mut names = Vec::new();
        let mut cur = obj.clone();
        // The inventory is a tree a few levels deep; the bound stops a cycle.
        for _ in 0..64 {
            let oc = self
                .retrieve_one(&cur, &["name", "parent"])?
                .ok_or_else(|| Error::NotFound {
                    what: format!("managed entity {cur}"),
                })?;
            match oc.get("parent").and_then(MoRef::from_element) {
                Some(parent) => {
                    names.push(oc.text("name").unwrap_or_default().to_string());
                    cur = parent;
                }
                None => break,
            }
        }
        names.reverse();
        Ok(format!("/{}", names.join("/")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "420f3d5c-8a1b-4c2d-9e3f-0123456789ab";

    #[test]
    fn selector_forms() {
        assert_eq!(VmSelector::parse("web"), VmSelector::Name("web".into()));
        assert_eq!(
            VmSelector::parse("/DC0/vm/web"),
            VmSelector::InventoryPath("/DC0/vm/web".into())
        );
        assert_eq!(
            VmSelector::parse("moref=vm-1"),
            VmSelector::MoRef("vm-1".into())
        );
        assert_eq!(
            VmSelector::parse("uuid=abc"),
            VmSelector::BiosUuid("abc".into())
        );
        assert_eq!(
            VmSelector::parse("instance-uuid=abc"),
            VmSelector::InstanceUuid("abc".into())
        );
        assert_eq!(VmSelector::parse("name=/x"), VmSelector::Name("/x".into()));
    }

    #[test]
    fn shapes_without_prefix() {
        assert_eq!(
            VmSelector::parse("vm-42"),
            VmSelector::MoRef("vm-42".into())
        );
        assert_eq!(VmSelector::parse(U), VmSelector::Uuid(U.into()));
        // Any case; vSphere's own spelling is lower case.
        assert_eq!(
            VmSelector::parse(&U.to_uppercase()),
            VmSelector::Uuid(U.into())
        );
        assert_eq!(
            VmSelector::parse("DC0/vm/web"),
            VmSelector::InventoryPath("DC0/vm/web".into())
        );
        // Near misses are names.
        for s in [
            "vm-",
            "vm-4x",
            "VM-42",
            "vm-42-clone",
            "web-01",
            "420f3d5c-8a1b-4c2d-9e3f-0123456789a",
            "420f3d5c8a1b4c2d9e3f0123456789ab",
            "420f3d5c-8a1b-4c2d-9e3f-0123456789ag",
        ] {
            assert_eq!(VmSelector::parse(s), VmSelector::Name(s.into()), "{s}");
        }
    }

    #[test]
    fn prefixes_win_over_shapes() {
        assert_eq!(
            VmSelector::parse("name=vm-42"),
            VmSelector::Name("vm-42".into())
        );
        assert_eq!(
            VmSelector::parse(&format!("name={U}")),
            VmSelector::Name(U.into())
        );
        assert_eq!(
            VmSelector::parse(&format!("uuid={}", U.to_uppercase())),
            VmSelector::BiosUuid(U.into())
        );
        assert_eq!(
            VmSelector::parse(&format!("instance-uuid={U}")),
            VmSelector::InstanceUuid(U.into())
        );
        assert_eq!(
            VmSelector::parse("path=DC0/vm/vm-42"),
            VmSelector::InventoryPath("DC0/vm/vm-42".into())
        );
        assert_eq!(
            VmSelector::parse("moref=vm-7"),
            VmSelector::MoRef("vm-7".into())
        );
    }

    #[test]
    fn display_names_the_kind() {
        assert_eq!(
            VmSelector::parse(U).to_string(),
            format!("UUID {U} (BIOS or instance)")
        );
        assert_eq!(VmSelector::parse("vm-42").to_string(), "moref vm-42");
    }
}
