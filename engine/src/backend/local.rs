//! The local-directory backend. An object with key `a/b/c` is the file
//! `<root>/a/b/c` ([`crate::layout::local_path`]). Writes (puts and copies)
//! go to a temporary file `.tmp-<random>` in the same directory and are
//! renamed into place, so a reader never sees a partial object. fsync
//! policy: an Immediate write fsyncs the file before the rename and the
//! directory after it; a Deferred one does neither (a put only asks the
//! kernel to start writing the file back), and [`Backend::sync`] runs
//! `syncfs(2)` on the repository's file system, which makes every earlier
//! rename, delete and their data durable at once.
//!
//! Faster paths than the object-store defaults: [`Backend::touch`] sets
//! the file's modification time to now, and [`Backend::move_object`] is
//! one `rename(2)` (atomic, though nothing relies on that).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::{Backend, Durability, ObjectStat};
use crate::layout::{is_temporary, local_path, TEMP_PREFIX};
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

    fn full(&self, key: &str) -> PathBuf {
        local_path(&self.root, key)
    }

    fn err(&self, path: &Path, e: std::io::Error) -> Error {
        Error::storage(path.display().to_string(), e)
    }

    /// Writes the object `key` through a temporary file that `fill`
    /// writes, renamed into place (fsyncs as `durability` says).
    fn write_via_tmp(
        &self,
        key: &str,
        durability: Durability,
        fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
    ) -> Result<()> {
        let p = self.full(key);
        let dir = p.parent().expect("object keys have a parent").to_path_buf();
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", random_suffix()));
        let sync = durability == Durability::Immediate;
        let written = (|| {
            let mut f = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    fs::create_dir_all(&dir)?;
                    OpenOptions::new().write(true).create_new(true).open(&tmp)?
                }
                other => other?,
            };
            fill(&mut f)?;
            if sync {
                f.sync_all()?;
            }
            fs::rename(&tmp, &p)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.err(&p, e));
        }
        if sync {
            sync_dir(&dir).map_err(|e| self.err(&dir, e))?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
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

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.full(key);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn put(&self, key: &str, data: &[u8], durability: Durability) -> Result<()> {
        self.write_via_tmp(key, durability, &mut |f| {
            f.write_all(data)?;
            if durability == Durability::Deferred {
                // Start writing it back now, so the next sync() finds little
                // left to flush (advice only; it never loses data).
                let _ = rustix::fs::fadvise(&*f, 0, 0, rustix::fs::Advice::DontNeed);
            }
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let p = self.full(key);
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
                if is_temporary(&name) {
                    continue;
                }
                let is_dir = ent.file_type().map_err(|e| me.err(&p, e))?.is_dir();
                names.push((name, is_dir));
            }
            names.sort();
            for (name, is_dir) in names {
                // Listing the root (rel "") must give "name", not "/name".
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

    fn stat(&self, key: &str) -> Result<Option<ObjectStat>> {
        let p = self.full(key);
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

    fn copy(&self, from: &str, to: &str, durability: Durability) -> Result<bool> {
        let src = self.full(from);
        let mut s = match File::open(&src) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err(&src, e)),
        };
        // std::io::copy between files uses copy_file_range(2) on Linux.
        self.write_via_tmp(to, durability, &mut |f| std::io::copy(&mut s, f).map(drop))?;
        Ok(true)
    }

    fn sync(&self) -> Result<()> {
        let d = File::open(&self.root).map_err(|e| self.err(&self.root, e))?;
        rustix::fs::syncfs(&d).map_err(|e| self.err(&self.root, e.into()))
    }

    fn get_into(&self, key: &str, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        let p = self.full(key);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err(&p, e)),
        };
        // read_to_end sizes the buffer from the file's length.
        f.read_to_end(buf).map_err(|e| self.err(&p, e))?;
        Ok(true)
    }

    fn prefetch(&self, key: &str) {
        // POSIX_FADV_WILLNEED queues readahead of the whole file and returns
        // at once, so the disk sees many reads in flight, not one per worker.
        if let Ok(f) = File::open(self.full(key)) {
            let _ = rustix::fs::fadvise(&f, 0, 0, rustix::fs::Advice::WillNeed);
        }
    }

    fn touch(&self, key: &str) -> Result<bool> {
        let p = self.full(key);
        let f = match File::options().write(true).open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err(&p, e)),
        };
        // The file system's clock is the host's: "now" is the storage's now.
        f.set_modified(std::time::SystemTime::now())
            .map_err(|e| self.err(&p, e))?;
        Ok(true)
    }

    fn move_object(&self, from: &str, to: &str, durability: Durability) -> Result<bool> {
        let (f, t) = (self.full(from), self.full(to));
        let dir = t.parent().expect("object keys have a parent").to_path_buf();
        let moved = match fs::rename(&f, &t) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !f.exists() {
                    return Ok(false);
                }
                fs::create_dir_all(&dir).and_then(|()| fs::rename(&f, &t))
            }
            other => other,
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound && !f.exists() => return Ok(false),
            Err(e) => return Err(self.err(&f, e)),
        }
        if durability == Durability::Immediate {
            sync_dir(&dir).map_err(|e| self.err(&dir, e))?;
            if let Some(from_dir) = f.parent() {
                sync_dir(from_dir).map_err(|e| self.err(from_dir, e))?;
            }
        }
        Ok(true)
    }
}
