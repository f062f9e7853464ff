//! Generations: the document that records one backup run of one source (a
//! VM or a disk image). It lists one [`DiskRef`] per disk, each naming the
//! disk's manifest, and free-form metadata (for a VM: the saved
//! `VirtualMachineConfigInfo`). A generation is committed when its blob
//! exists; it is written last, after every manifest and chunk it names.

use crate::codec::{self, Reader, Writer};
use crate::{magic, FormatError, ObjectId};

pub const VERSION: u16 = 1;

/// What was backed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A local disk image or block device.
    Image = 1,
    /// A vSphere virtual machine.
    Vm = 2,
}

/// One disk of a generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskRef {
    pub name: String,
    pub manifest: ObjectId,
    pub capacity: u64,
    pub chunk_size: u32,
    /// Bytes in slots that hold data.
    pub data_bytes: u64,
    /// Stored bytes this generation added for this disk.
    pub new_stored_bytes: u64,
}

/// One backup run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub source_kind: SourceKind,
    /// The lineage: image name or VM name.
    pub source: String,
    pub hostname: String,
    /// Start and end of the backup, Unix seconds UTC.
    pub started: i64,
    pub finished: i64,
    /// UTC offset of the backup host's local time, seconds.
    pub utc_offset: i32,
    pub parent: Option<ObjectId>,
    pub disks: Vec<DiskRef>,
    /// Free-form key/value metadata (e.g. `vm.config` → XML).
    pub metadata: Vec<(String, Vec<u8>)>,
    /// vmkeep version that wrote it.
    pub writer: String,
}

impl Generation {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        codec::header(&mut w, magic::GENERATION, VERSION);
        w.u8(self.source_kind as u8)
            .str(&self.source)
            .str(&self.hostname)
            .i64(self.started)
            .i64(self.finished)
            .i32(self.utc_offset);
        match &self.parent {
            Some(p) => w.u8(1).raw(p.as_bytes()),
            None => w.u8(0),
        };
        w.u32(self.disks.len() as u32);
        for d in &self.disks {
            w.str(&d.name)
                .raw(d.manifest.as_bytes())
                .u64(d.capacity)
                .u32(d.chunk_size)
                .u64(d.data_bytes)
                .u64(d.new_stored_bytes);
        }
        w.u32(self.metadata.len() as u32);
        for (k, v) in &self.metadata {
            w.str(k).bytes(v);
        }
        w.str(&self.writer);
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new("generation", data);
        r.header(magic::GENERATION, VERSION)?;
        let source_kind = match r.u8()? {
            1 => SourceKind::Image,
            2 => SourceKind::Vm,
            k => {
                return Err(FormatError::malformed(
                    "generation",
                    format!("source kind {k}"),
                ))
            }
        };
        let source = r.str()?;
        let hostname = r.str()?;
        let started = r.i64()?;
        let finished = r.i64()?;
        let utc_offset = r.i32()?;
        let parent = match r.u8()? {
            0 => None,
            1 => Some(ObjectId(r.array()?)),
            f => {
                return Err(FormatError::malformed(
                    "generation",
                    format!("parent flag {f}"),
                ))
            }
        };
        let ndisks = r.u32()?;
        let mut disks = Vec::new();
        for _ in 0..ndisks {
            let d = DiskRef {
                name: r.str()?,
                manifest: ObjectId(r.array()?),
                capacity: r.u64()?,
                chunk_size: r.u32()?,
                data_bytes: r.u64()?,
                new_stored_bytes: r.u64()?,
            };
            crate::manifest::check_chunk_size(d.chunk_size)?;
            disks.push(d);
        }
        let nmeta = r.u32()?;
        let mut metadata = Vec::new();
        for _ in 0..nmeta {
            let k = r.str()?;
            let v = r.bytes()?.to_vec();
            metadata.push((k, v));
        }
        let writer = r.str()?;
        r.end()?;
        Ok(Generation {
            source_kind,
            source,
            hostname,
            started,
            finished,
            utc_offset,
            parent,
            disks,
            metadata,
            writer,
        })
    }
}
