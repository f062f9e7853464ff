//! The local-directory backend. An object `a/b/c` is the file
//! `<root>/a/b/c`. Writes go to a temporary file `.tmp-<random>` in the same
//! directory and are renamed into place, so a reader never sees a partial
//! object. fsync policy: an Immediate put fsyncs the file before the rename
//! and the directory after it; a Deferred put does neither (it only asks
//! the kernel to start writing the file back), and [`Backend::sync`] runs
//! `syncfs(2)` on the repository's file system, which makes every earlier
//! rename and its data durable at once.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::{Backend, Durability, ObjectStat};
use crate::{Error, Result};

/// A repository in a local directory.
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    fn err(&self, path: &Path, e: std::io::Error) -> Error {
        Error::storage(path.display().to_string(), e)
    }

    fn write_new(&self, dir: &Path, tmp: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
        let mut f = match OpenOptions::new().write(true).create_new(true).open(tmp) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                OpenOptions::new().write(true).create_new(true).open(tmp)?
            }
            other => other?,
        };
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        } else {
            // Start writing it back now, so the next sync() finds little
            // left to flush (advice only; it never loses data).
            let _ = rustix::fs::fadvise(&f, 0, 0, rustix::fs::Advice::DontNeed);
        }
        Ok(())
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("operating system random source failed");
    hex::encode(b)
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let p = self.full(path);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn get_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        let p = self.full(path);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err(&p, e)),
        };
        // read_to_end sizes the buffer from the file's length.
        f.read_to_end(buf).map_err(|e| self.err(&p, e))?;
        Ok(true)
    }

    fn prefetch(&self, path: &str) {
        // POSIX_FADV_WILLNEED queues readahead of the whole file and returns
        // at once, so the disk sees many reads in flight, not one per worker.
        if let Ok(f) = File::open(self.full(path)) {
            let _ = rustix::fs::fadvise(&f, 0, 0, rustix::fs::Advice::WillNeed);
        }
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        let p = self.full(path);
        match fs::symlink_metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn put(&self, path: &str, data: &[u8], durability: Durability) -> Result<()> {
        let p = self.full(path);
        let dir = p
            .parent()
            .expect("object paths have a parent")
            .to_path_buf();
        let tmp = dir.join(format!(".tmp-{}", random_suffix()));
        let sync = durability == Durability::Immediate;
        if let Err(e) = self.write_new(&dir, &tmp, data, sync) {
            let _ = fs::remove_file(&tmp);
            return Err(self.err(&p, e));
        }
        if let Err(e) = fs::rename(&tmp, &p) {
            let _ = fs::remove_file(&tmp);
            return Err(self.err(&p, e));
        }
        if sync {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.err(&dir, e))?;
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let p = self.full(path);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        let p = self.full(path);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn list(&self, dir: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        fn walk(me: &LocalBackend, rel: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
            let p = me.full(rel);
            let rd = match fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(me.err(&p, e)),
            };
            let mut names = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|e| me.err(&p, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    continue;
                }
                let is_dir = ent.file_type().map_err(|e| me.err(&p, e))?.is_dir();
                names.push((name, is_dir));
            }
            names.sort();
            for (name, is_dir) in names {
                // Listing the root (rel "") must give "name", not "/name",
                // which `full` would turn into an absolute path.
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if is_dir {
                    walk(me, &child, f)?;
                } else {
                    f(&child)?;
                }
            }
            Ok(())
        }
        walk(self, dir.trim_end_matches('/'), f)
    }

    fn touch(&self, path: &str) -> Result<bool> {
        let p = self.full(path);
        let f = match File::options().write(true).open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err(&p, e)),
        };
        f.set_modified(std::time::SystemTime::now())
            .map_err(|e| self.err(&p, e))?;
        Ok(true)
    }

    fn sync(&self) -> Result<()> {
        let d = File::open(&self.root).map_err(|e| self.err(&self.root, e))?;
        rustix::fs::syncfs(&d).map_err(|e| self.err(&self.root, e.into()))
    }

    fn modified(&self, path: &str) -> Result<Option<i64>> {
        Ok(self.stat(path)?.map(|s| s.modified))
    }

    fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        let p = self.full(path);
        match fs::metadata(&p) {
            Ok(m) => {
                let t = m.modified().map_err(|e| self.err(&p, e))?;
                Ok(Some(ObjectStat {
                    size: m.len(),
                    modified: t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0),
                }))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn rename(&self, from: &str, to: &str, durability: Durability) -> Result<()> {
        let (f, t) = (self.full(from), self.full(to));
        let dir = t
            .parent()
            .expect("object paths have a parent")
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| self.err(&dir, e))?;
        fs::rename(&f, &t).map_err(|e| self.err(&f, e))?;
        if durability == Durability::Deferred {
            return Ok(());
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err(&dir, e))
    }
}
