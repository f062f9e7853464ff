//! Operations that change a VM: CBT, snapshots, power, creation.
//!
//! Nouns: [`SnapshotOutcome`] (the snapshot and whether it is quiesced or a
//! reported crash-consistent fallback), [`NewVm`] / [`NewDisk`] (what
//! CreateVM_Task builds), [`Placement`] (folder, pool, datastore).
//!
//! Invariants: every task is waited for; snapshots never include memory; a
//! failed quiesced snapshot falls back to a crash-consistent one and says so
//! in `quiesce_error`; SOAP elements are sent in the schema's order.

use crate::client::Client;
use crate::error::{Error, Fault, Result};
use crate::soap::MoRef;
use crate::xml::escape;

/// The result of CreateSnapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotOutcome {
    /// The new snapshot.
    pub snapshot: MoRef,
    /// Whether the guest file systems were quiesced.
    pub quiesced: bool,
    /// Why quiescing failed, when the snapshot fell back to crash-consistent.
    pub quiesce_error: Option<String>,
}

/// A disk for a new VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDisk {
    /// Capacity in bytes (rounded up to whole KiB).
    pub capacity_bytes: u64,
    /// Thin provisioned.
    pub thin: bool,
}

/// What CreateVM_Task builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVm {
    /// VM name.
    pub name: String,
    /// Guest OS id, e.g. "otherGuest64".
    pub guest_id: String,
    /// Datastore name for the VM's files and disks.
    pub datastore: String,
    /// Virtual CPUs.
    pub num_cpus: u32,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disks, all on one paravirtual SCSI controller.
    pub disks: Vec<NewDisk>,
}

/// Where a new VM goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The datacenter.
    pub datacenter: MoRef,
    /// Its VM folder.
    pub vm_folder: MoRef,
    /// A resource pool.
    pub resource_pool: MoRef,
    /// A datastore name.
    pub datastore: String,
}

/// Serializes the VirtualMachineConfigSpec of a new VM.
pub fn new_vm_spec_xml(vm: &NewVm) -> String {
    let ds = escape(&vm.datastore);
    let mut s = format!(
        "<config><name>{}</name><guestId>{}</guestId><files><vmPathName>[{ds}]</vmPathName></files><numCPUs>{}</numCPUs><memoryMB>{}</memoryMB>",
        escape(&vm.name),
        escape(&vm.guest_id),
        vm.num_cpus,
        vm.memory_mb
    );
    s.push_str(
        "<deviceChange><operation>add</operation><device xsi:type=\"ParaVirtualSCSIController\"><key>-100</key><busNumber>0</busNumber><sharedBus>noSharing</sharedBus></device></deviceChange>",
    );
    let mut unit = 0;
    for (i, d) in vm.disks.iter().enumerate() {
        if unit == 7 {
            unit += 1; // the controller's own unit
        }
        let kb = d.capacity_bytes.div_ceil(1024);
        s.push_str(&format!(
            "<deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type=\"VirtualDisk\"><key>{}</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[{ds}]</fileName><diskMode>persistent</diskMode><thinProvisioned>{}</thinProvisioned></backing><controllerKey>-100</controllerKey><unitNumber>{unit}</unitNumber><capacityInKB>{kb}</capacityInKB><capacityInBytes>{}</capacityInBytes></device></deviceChange>",
            -101 - i as i64,
            d.thin,
            kb * 1024
        ));
        unit += 1;
    }
    s.push_str("</config>");
    s
}

fn quiesce_failure(e: &Error) -> bool {
    match e.fault() {
        Some(Fault::InvalidLogin)
        | Some(Fault::NotAuthenticated)
        | Some(Fault::ManagedObjectNotFound { .. })
        | Some(Fault::TaskInProgress) => false,
        Some(_) => true,
        None => false,
    }
}

impl Client {
    fn task_moref(&self, method: &str, params: &str) -> Result<MoRef> {
        self.run_task(method, params)?
            .as_ref()
            .and_then(MoRef::from_element)
            .ok_or_else(|| Error::Unexpected {
                method: method.to_string(),
                what: "task has no result moref".into(),
            })
    }

    /// Enables or disables Changed Block Tracking (ReconfigVM_Task).
    /// Takes effect at the next snapshot or stun.
    pub fn set_change_tracking(&self, vm: &MoRef, enabled: bool) -> Result<()> {
        let params = format!(
            "{}<spec><changeTrackingEnabled>{enabled}</changeTrackingEnabled></spec>",
            vm.to_xml("_this")
        );
        self.run_task("ReconfigVM_Task", &params).map(|_| ())
    }

    fn snapshot_once(
        &self,
        vm: &MoRef,
        name: &str,
        description: &str,
        quiesce: bool,
    ) -> Result<MoRef> {
        let params = format!(
            "{}<name>{}</name><description>{}</description><memory>false</memory><quiesce>{quiesce}</quiesce>",
            vm.to_xml("_this"),
            escape(name),
            escape(description)
        );
        self.task_moref("CreateSnapshot_Task", &params)
    }

    /// Creates a snapshot without memory; with `quiesce`, falls back to a
    /// crash-consistent snapshot when quiescing fails (reported).
    pub fn create_snapshot(
        &self,
        vm: &MoRef,
        name: &str,
        description: &str,
        quiesce: bool,
    ) -> Result<SnapshotOutcome> {
        if !quiesce {
            return Ok(SnapshotOutcome {
                snapshot: self.snapshot_once(vm, name, description, false)?,
                quiesced: false,
                quiesce_error: None,
            });
        }
        match self.snapshot_once(vm, name, description, true) {
            Ok(s) => Ok(SnapshotOutcome {
                snapshot: s,
                quiesced: true,
                quiesce_error: None,
            }),
            Err(e) if quiesce_failure(&e) => {
                log::warn!("quiesced snapshot of {vm} failed ({e}); taking a crash-consistent one");
                Ok(SnapshotOutcome {
                    snapshot: self.snapshot_once(vm, name, description, false)?,
                    quiesced: false,
                    quiesce_error: Some(e.to_string()),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a snapshot (its children stay), consolidating disks.
    pub fn remove_snapshot(&self, snapshot: &MoRef) -> Result<()> {
        let params = format!(
            "{}<removeChildren>false</removeChildren><consolidate>true</consolidate>",
            snapshot.to_xml("_this")
        );
        self.run_task("RemoveSnapshot_Task", &params).map(|_| ())
    }

    /// Reverts the VM to a snapshot.
    pub fn revert_to_snapshot(&self, snapshot: &MoRef) -> Result<()> {
        self.run_task("RevertToSnapshot_Task", &snapshot.to_xml("_this"))
            .map(|_| ())
    }

    /// Powers a VM on.
    pub fn power_on(&self, vm: &MoRef) -> Result<()> {
        self.run_task("PowerOnVM_Task", &vm.to_xml("_this"))
            .map(|_| ())
    }

    /// Powers a VM off (hard).
    pub fn power_off(&self, vm: &MoRef) -> Result<()> {
        self.run_task("PowerOffVM_Task", &vm.to_xml("_this"))
            .map(|_| ())
    }

    /// Creates a VM from a raw VirtualMachineConfigSpec (`<config>...</config>`).
    pub fn create_vm_raw(
        &self,
        folder: &MoRef,
        config_spec_xml: &str,
        pool: &MoRef,
        host: Option<&MoRef>,
    ) -> Result<MoRef> {
        let params = format!(
            "{}{config_spec_xml}{}{}",
            folder.to_xml("_this"),
            pool.to_xml("pool"),
            host.map(|h| h.to_xml("host")).unwrap_or_default()
        );
        self.task_moref("CreateVM_Task", &params)
    }

    /// Creates a VM with the given disks.
    pub fn create_vm(&self, place: &Placement, vm: &NewVm) -> Result<MoRef> {
        self.create_vm_raw(
            &place.vm_folder,
            &new_vm_spec_xml(vm),
            &place.resource_pool,
            None,
        )
    }

    /// The first datacenter's VM folder, a resource pool and datastore of it.
    pub fn default_placement(&self) -> Result<Placement> {
        let dcs = self.retrieve_all("Datacenter", &["vmFolder"])?;
        let dc = dcs.first().ok_or_else(|| Error::NotFound {
            what: "datacenter".into(),
        })?;
        let vm_folder = dc
            .get("vmFolder")
            .and_then(MoRef::from_element)
            .ok_or_else(|| Error::NotFound {
                what: "VM folder".into(),
            })?;
        let pool = self
            .retrieve_all("ResourcePool", &["name"])?
            .into_iter()
            .map(|o| o.obj)
            .min()
            .ok_or_else(|| Error::NotFound {
                what: "resource pool".into(),
            })?;
        let ds = self
            .retrieve_all("Datastore", &["name"])?
            .into_iter()
            .filter_map(|o| o.text("name").map(str::to_string))
            .min()
            .ok_or_else(|| Error::NotFound {
                what: "datastore".into(),
            })?;
        Ok(Placement {
            datacenter: dc.obj.clone(),
            vm_folder,
            resource_pool: pool,
            datastore: ds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Document;

    #[test]
    fn new_vm_spec_is_well_formed_and_ordered() {
        let spec = new_vm_spec_xml(&NewVm {
            name: "a&b".into(),
            guest_id: "otherGuest64".into(),
            datastore: "ds1".into(),
            num_cpus: 1,
            memory_mb: 128,
            disks: (0..9)
                .map(|i| NewDisk {
                    capacity_bytes: 1000 + i,
                    thin: true,
                })
                .collect(),
        });
        let doc = Document::parse(&format!("<x xmlns:xsi=\"i\">{spec}</x>")).unwrap();
        let cfg = doc.root.child("config").unwrap();
        let names: Vec<_> = cfg
            .children
            .iter()
            .map(|c| c.name.as_str())
            .take(5)
            .collect();
        assert_eq!(names, ["name", "guestId", "files", "numCPUs", "memoryMB"]);
        assert_eq!(cfg.child_text("name"), Some("a&b"));
        let units: Vec<_> = cfg
            .children_named("deviceChange")
            .skip(1)
            .map(|d| d.child("device").unwrap().child_i64("unitNumber").unwrap())
            .collect();
        assert_eq!(units, [0, 1, 2, 3, 4, 5, 6, 8, 9]);
        let first = cfg
            .children_named("deviceChange")
            .nth(1)
            .unwrap()
            .child("device")
            .unwrap();
        assert_eq!(first.child_i64("capacityInBytes"), Some(1024));
    }
}
