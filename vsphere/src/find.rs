//! Finding a virtual machine.
//!
//! Nouns: [`VmSelector`] (by name anywhere in the inventory, inventory
//! path, moref, BIOS UUID or instance UUID).
//!
//! Invariants: a name that matches several VMs is an [`Error::Ambiguous`]
//! listing every match, never the first one; a moref is checked to exist.

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
}

impl VmSelector {
    /// Parses `moref=vm-42`, `uuid=...`, `instance-uuid=...`, `path=/DC/vm/x`,
    /// `name=x`; a leading `/` means a path; anything else is a name.
    pub fn parse(s: &str) -> VmSelector {
        if let Some(v) = s.strip_prefix("moref=") {
            VmSelector::MoRef(v.to_string())
        } else if let Some(v) = s.strip_prefix("uuid=") {
            VmSelector::BiosUuid(v.to_string())
        } else if let Some(v) = s.strip_prefix("instance-uuid=") {
            VmSelector::InstanceUuid(v.to_string())
        } else if let Some(v) = s.strip_prefix("path=") {
            VmSelector::InventoryPath(v.to_string())
        } else if let Some(v) = s.strip_prefix("name=") {
            VmSelector::Name(v.to_string())
        } else if s.starts_with('/') {
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
        }
    }
}

impl Client {
    /// Finds exactly one VM.
    pub fn find_vm(&self, sel: &VmSelector) -> Result<MoRef> {
        let not_found = || Error::NotFound {
            what: format!("virtual machine with {sel}"),
        };
        match sel {
            VmSelector::Name(name) => {
                let mut hits: Vec<MoRef> = self
                    .retrieve_all("VirtualMachine", &["name"])?
                    .into_iter()
                    .filter(|oc| oc.text("name") == Some(name.as_str()))
                    .map(|oc| oc.obj)
                    .collect();
                hits.sort();
                match hits.len() {
                    0 => Err(not_found()),
                    1 => Ok(hits.remove(0)),
                    _ => Err(Error::Ambiguous {
                        name: name.clone(),
                        matches: hits.iter().map(|m| m.value.clone()).collect(),
                    }),
                }
            }
            VmSelector::InventoryPath(path) => {
                let params = format!(
                    "{}<inventoryPath>{}</inventoryPath>",
                    self.sc.search_index.to_xml("_this"),
                    escape(path.trim_start_matches('/'))
                );
                let (_, resp) = self.call("FindByInventoryPath", &params)?;
                resp.child("returnval")
                    .and_then(MoRef::from_element)
                    .filter(|m| m.kind == "VirtualMachine")
                    .ok_or_else(not_found)
            }
            VmSelector::MoRef(v) => {
                let m = MoRef::new("VirtualMachine", v);
                match self.retrieve_one(&m, &["name"])? {
                    Some(oc) if oc.get("name").is_some() => Ok(m),
                    _ => Err(not_found()),
                }
            }
            VmSelector::BiosUuid(u) | VmSelector::InstanceUuid(u) => {
                let instance = matches!(sel, VmSelector::InstanceUuid(_));
                let params = format!(
                    "{}<uuid>{}</uuid><vmSearch>true</vmSearch><instanceUuid>{instance}</instanceUuid>",
                    self.sc.search_index.to_xml("_this"),
                    escape(u)
                );
                let (_, resp) = self.call("FindByUuid", &params)?;
                resp.child("returnval")
                    .and_then(MoRef::from_element)
                    .ok_or_else(not_found)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
