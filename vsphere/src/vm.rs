//! Virtual machine state read from its properties.
//!
//! Nouns: [`VmInfo`] (power state, hardware version, CBT flag, UUIDs,
//! disks, snapshot tree, and the whole `VirtualMachineConfigInfo` as raw
//! XML), [`DiskInfo`] (one virtual disk), [`SnapshotNode`] (the tree),
//! [`VmSummary`] (one line of `vm list`).
//!
//! Invariants: disk capacity is `capacityInBytes`, or `capacityInKB * 1024`
//! when the server omits the former; an unset `changeTrackingEnabled` reads
//! as false; the raw config is a standalone document (`<config
//! xmlns="urn:vim25" xsi:type="VirtualMachineConfigInfo">`) that keeps every
//! element the server sent, for restore-as-new-VM.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::property::ObjectContent;
use crate::soap::MoRef;
use crate::xml::Element;

/// One virtual disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Device key (unique within the VM).
    pub key: i32,
    /// Controller device key.
    pub controller_key: Option<i32>,
    /// Unit number on the controller.
    pub unit_number: Option<i32>,
    /// Label, e.g. "Hard disk 1".
    pub label: String,
    /// Backing file, e.g. "[datastore1] vm/vm.vmdk" (a delta while a snapshot exists).
    pub file_name: String,
    /// Datastore name from the file name.
    pub datastore_name: String,
    /// Datastore moref, when the server gave one.
    pub datastore: Option<MoRef>,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Thin provisioned (`thinProvisioned`); false when unset.
    pub thin: bool,
    /// Disk mode, e.g. "persistent".
    pub disk_mode: String,
    /// CBT change id of this disk state, when tracking is on.
    pub change_id: Option<String>,
    /// Disk UUID, when given.
    pub uuid: Option<String>,
    /// Backing type, e.g. "VirtualDiskFlatVer2BackingInfo".
    pub backing_type: String,
}

/// A snapshot and its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotNode {
    /// Snapshot moref.
    pub snapshot: MoRef,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time as the server wrote it.
    pub create_time: String,
    /// Whether it was quiesced.
    pub quiesced: bool,
    /// Child snapshots.
    pub children: Vec<SnapshotNode>,
}

impl SnapshotNode {
    /// This node and all its descendants, depth first.
    pub fn flatten(&self) -> Vec<&SnapshotNode> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.flatten());
        }
        out
    }
}

/// What a backup needs to know about a VM.
#[derive(Clone, Debug)]
pub struct VmInfo {
    /// The VM.
    pub moref: MoRef,
    /// Name.
    pub name: String,
    /// "poweredOn", "poweredOff" or "suspended".
    pub power_state: String,
    /// Hardware version, e.g. "vmx-19".
    pub hardware_version: String,
    /// `config.changeTrackingEnabled` (false when unset).
    pub change_tracking: bool,
    /// BIOS UUID (`config.uuid`).
    pub bios_uuid: String,
    /// Instance UUID (`config.instanceUuid`).
    pub instance_uuid: String,
    /// Guest OS id.
    pub guest_id: String,
    /// Virtual disks in device order.
    pub disks: Vec<DiskInfo>,
    /// Root snapshots.
    pub snapshots: Vec<SnapshotNode>,
    /// Current snapshot.
    pub current_snapshot: Option<MoRef>,
    /// The whole VirtualMachineConfigInfo as a standalone XML document.
    pub config_xml: String,
}

impl VmInfo {
    /// Every snapshot of the VM, depth first (e.g. to find ones a crashed
    /// run left behind, by name or description).
    pub fn all_snapshots(&self) -> Vec<&SnapshotNode> {
        self.snapshots.iter().flat_map(|n| n.flatten()).collect()
    }
}

/// One line of `vm list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSummary {
    /// The VM.
    pub moref: MoRef,
    /// Name.
    pub name: String,
    /// Power state.
    pub power_state: String,
    /// CBT enabled.
    pub change_tracking: bool,
    /// Number of virtual disks.
    pub disk_count: usize,
    /// Sum of disk capacities in bytes.
    pub total_bytes: u64,
}

/// Splits "[ds] path" into ("ds", "path").
pub fn split_datastore_path(p: &str) -> Option<(&str, &str)> {
    let rest = p.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some((&rest[..end], rest[end + 1..].trim_start()))
}

/// Parses one `VirtualDisk` device element.
pub fn parse_disk(dev: &Element) -> DiskInfo {
    let backing = dev.child("backing");
    let b = |n: &str| backing.and_then(|b| b.child_text(n)).map(str::to_string);
    let capacity = dev
        .child_i64("capacityInBytes")
        .filter(|v| *v > 0)
        .or_else(|| dev.child_i64("capacityInKB").map(|kb| kb * 1024))
        .unwrap_or(0)
        .max(0) as u64;
    let file_name = b("fileName").unwrap_or_default();
    DiskInfo {
        key: dev.child_i64("key").unwrap_or(0) as i32,
        controller_key: dev.child_i64("controllerKey").map(|v| v as i32),
        unit_number: dev.child_i64("unitNumber").map(|v| v as i32),
        label: dev
            .path(&["deviceInfo", "label"])
            .map(|l| l.text.trim().to_string())
            .unwrap_or_default(),
        datastore_name: split_datastore_path(&file_name)
            .map(|(d, _)| d.to_string())
            .unwrap_or_default(),
        datastore: backing
            .and_then(|b| b.child("datastore"))
            .and_then(MoRef::from_element),
        file_name,
        capacity_bytes: capacity,
        thin: backing
            .and_then(|b| b.child_bool("thinProvisioned"))
            .unwrap_or(false),
        disk_mode: b("diskMode").unwrap_or_default(),
        change_id: b("changeId").filter(|c| !c.is_empty()),
        uuid: b("uuid").filter(|c| !c.is_empty()),
        backing_type: backing.and_then(|b| b.xsi_type.clone()).unwrap_or_default(),
    }
}

/// Every virtual disk of a `VirtualMachineConfigInfo` (or of an
/// `ArrayOfVirtualDevice` element).
pub fn parse_disks(devices_parent: &Element) -> Vec<DiskInfo> {
    let mut out = Vec::new();
    let mut visit = |dev: &Element| {
        if dev.xsi_type.as_deref() == Some("VirtualDisk") {
            out.push(parse_disk(dev));
        }
    };
    if let Some(hw) = devices_parent.child("hardware") {
        hw.children_named("device").for_each(&mut visit);
    } else {
        devices_parent.children.iter().for_each(&mut visit);
    }
    out
}

/// Parses a list of `VirtualMachineSnapshotTree` elements.
pub fn parse_snapshot_tree<'a>(nodes: impl Iterator<Item = &'a Element>) -> Vec<SnapshotNode> {
    nodes
        .filter_map(|n| {
            Some(SnapshotNode {
                snapshot: n.child("snapshot").and_then(MoRef::from_element)?,
                name: n.child_text("name").unwrap_or("").to_string(),
                description: n.child_text("description").unwrap_or("").to_string(),
                create_time: n.child_text("createTime").unwrap_or("").to_string(),
                quiesced: n.child_bool("quiesced").unwrap_or(false),
                children: parse_snapshot_tree(n.children_named("childSnapshotList")),
            })
        })
        .collect()
}

/// Wraps the inner XML of a `config` property into a standalone document.
pub fn standalone_config(inner: &str) -> String {
    format!(
        "<config xmlns=\"urn:vim25\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"VirtualMachineConfigInfo\">{inner}</config>"
    )
}

/// Builds a [`VmInfo`] from an object with `name`, `runtime.powerState`,
/// `config` and `snapshot` read.
pub fn vm_info_from(oc: &ObjectContent) -> Result<VmInfo> {
    let config = oc.get("config");
    let text = |n: &str| {
        config
            .and_then(|c| c.child_text(n))
            .unwrap_or("")
            .to_string()
    };
    let snap = oc.get("snapshot");
    Ok(VmInfo {
        moref: oc.obj.clone(),
        name: oc.text("name").unwrap_or("").to_string(),
        power_state: oc.text("runtime.powerState").unwrap_or("").to_string(),
        hardware_version: text("version"),
        change_tracking: config
            .and_then(|c| c.child_bool("changeTrackingEnabled"))
            .unwrap_or(false),
        bios_uuid: text("uuid"),
        instance_uuid: text("instanceUuid"),
        guest_id: text("guestId"),
        disks: config.map(parse_disks).unwrap_or_default(),
        snapshots: snap
            .map(|s| parse_snapshot_tree(s.children_named("rootSnapshotList")))
            .unwrap_or_default(),
        current_snapshot: snap
            .and_then(|s| s.child("currentSnapshot"))
            .and_then(MoRef::from_element),
        config_xml: oc
            .prop("config")
            .map(|p| standalone_config(p.raw_inner()))
            .unwrap_or_default(),
    })
}

impl Client {
    /// Reads a VM's state.
    pub fn vm_info(&self, vm: &MoRef) -> Result<VmInfo> {
        let oc = self
            .retrieve_one(vm, &["name", "runtime.powerState", "config", "snapshot"])?
            .ok_or_else(|| Error::NotFound {
                what: format!("virtual machine {vm}"),
            })?;
        vm_info_from(&oc)
    }

    /// Disks of a snapshot, from the snapshot's own config (their
    /// `changeId`s are the ones to record for the next incremental).
    pub fn snapshot_disks(&self, snapshot: &MoRef) -> Result<(Vec<DiskInfo>, String)> {
        let oc = self
            .retrieve_one(snapshot, &["config"])?
            .ok_or_else(|| Error::NotFound {
                what: format!("snapshot {snapshot}"),
            })?;
        let prop = oc.prop("config").ok_or_else(|| Error::Unexpected {
            method: "RetrievePropertiesEx".into(),
            what: format!("snapshot {snapshot} has no config"),
        })?;
        Ok((parse_disks(&prop.val), standalone_config(prop.raw_inner())))
    }

    /// Every VM with power state, CBT flag, disk count and total size.
    pub fn list_vms(&self) -> Result<Vec<VmSummary>> {
        let objs = self.retrieve_all(
            "VirtualMachine",
            &[
                "name",
                "runtime.powerState",
                "config.changeTrackingEnabled",
                "config.hardware.device",
            ],
        )?;
        let mut out: Vec<VmSummary> = objs
            .iter()
            .map(|oc| {
                let disks = oc
                    .get("config.hardware.device")
                    .map(parse_disks)
                    .unwrap_or_default();
                VmSummary {
                    moref: oc.obj.clone(),
                    name: oc.text("name").unwrap_or("").to_string(),
                    power_state: oc.text("runtime.powerState").unwrap_or("").to_string(),
                    change_tracking: oc.text("config.changeTrackingEnabled") == Some("true"),
                    disk_count: disks.len(),
                    total_bytes: disks.iter().map(|d| d.capacity_bytes).sum(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.moref.cmp(&b.moref)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Document;

    const CONFIG: &str = r#"<val xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="VirtualMachineConfigInfo"><name>vm1</name><version>vmx-19</version><uuid>4210-bios</uuid><instanceUuid>5010-inst</instanceUuid><guestId>otherGuest64</guestId><hardware><numCPU>2</numCPU><device xsi:type="ParaVirtualSCSIController"><key>1000</key><busNumber>0</busNumber></device><device xsi:type="VirtualDisk"><key>2000</key><deviceInfo><label>Hard disk 1</label></deviceInfo><backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[ds1] vm1/vm1.vmdk</fileName><datastore type="Datastore">datastore-11</datastore><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned><uuid>6000C29</uuid><changeId>52 aa/17</changeId></backing><controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInKB>4194304</capacityInKB><capacityInBytes>4294967296</capacityInBytes></device><device xsi:type="VirtualDisk"><key>2001</key><backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[ds2] vm1/vm1_1.vmdk</fileName><diskMode>independent_persistent</diskMode></backing><controllerKey>1000</controllerKey><unitNumber>1</unitNumber><capacityInKB>1024</capacityInKB></device></hardware><changeTrackingEnabled>true</changeTrackingEnabled></val>"#;

    #[test]
    fn disks_with_byte_and_kb_capacity() {
        let doc = Document::parse(CONFIG).unwrap();
        let disks = parse_disks(&doc.root);
        assert_eq!(disks.len(), 2);
        let d0 = &disks[0];
        assert_eq!(d0.key, 2000);
        assert_eq!(d0.controller_key, Some(1000));
        assert_eq!(d0.unit_number, Some(0));
        assert_eq!(d0.file_name, "[ds1] vm1/vm1.vmdk");
        assert_eq!(d0.datastore_name, "ds1");
        assert_eq!(d0.datastore, Some(MoRef::new("Datastore", "datastore-11")));
        assert_eq!(d0.capacity_bytes, 4294967296);
        assert!(d0.thin);
        assert_eq!(d0.disk_mode, "persistent");
        assert_eq!(d0.change_id.as_deref(), Some("52 aa/17"));
        assert_eq!(d0.label, "Hard disk 1");
        let d1 = &disks[1];
        assert_eq!(d1.capacity_bytes, 1024 * 1024);
        assert!(!d1.thin);
        assert_eq!(d1.change_id, None);
        assert_eq!(d1.datastore_name, "ds2");
    }

    #[test]
    fn snapshot_tree_nests() {
        let src = r#"<val><rootSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-1</snapshot><name>a</name><createTime>t</createTime><quiesced>false</quiesced><childSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-2</snapshot><name>b</name><quiesced>true</quiesced></childSnapshotList></rootSnapshotList><currentSnapshot type="VirtualMachineSnapshot">snapshot-2</currentSnapshot></val>"#;
        let doc = Document::parse(src).unwrap();
        let t = parse_snapshot_tree(doc.root.children_named("rootSnapshotList"));
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "a");
        assert_eq!(t[0].children[0].snapshot.value, "snapshot-2");
        assert!(t[0].children[0].quiesced);
        let names: Vec<_> = t[0].flatten().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn standalone_config_reparses() {
        let doc = Document::parse(CONFIG).unwrap();
        let raw = standalone_config(doc.inner_raw(&doc.root));
        let again = Document::parse(&raw).unwrap();
        assert_eq!(
            again.root.xsi_type.as_deref(),
            Some("VirtualMachineConfigInfo")
        );
        assert_eq!(parse_disks(&again.root).len(), 2);
        assert_eq!(again.root.child_text("version"), Some("vmx-19"));
    }

    #[test]
    fn datastore_paths() {
        assert_eq!(
            split_datastore_path("[a b] x/y.vmdk"),
            Some(("a b", "x/y.vmdk"))
        );
        assert_eq!(split_datastore_path("x"), None);
    }
}
