//! Reading a file of the final filesystem: its captured copy when the layer
//! reader kept one, otherwise straight from the spooled layer, by offset, a
//! buffer at a time (a layer is never loaded whole).

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;

use crate::error::{Error, Result};
use crate::fsindex::FsIndex;
use crate::layer::entry::FileType;
use crate::layer::program::Program;
pub use crate::layer::program::SpoolSlice;

pub struct ContentReader<'a> {
    pub index: &'a FsIndex,
    /// Per source layer, its spooled uncompressed tar, when there is one.
    pub spools: Vec<Option<File>>,
    /// Per source layer, whether its listing notes every program's needs.
    programs: Vec<bool>,
    /// Layers from here on are the image's own (the base's are not read).
    upper_from: usize,
    /// The first file of an upper layer that was asked for but could not be
    /// read (its layer came from the cache and it was not captured).
    missing: RefCell<Option<String>>,
}

/// Where a file's bytes are.
pub enum Bytes<'a> {
    Captured(&'a [u8]),
    Spool(SpoolSlice<'a>),
}

impl<'a> ContentReader<'a> {
    pub fn new(
        index: &'a FsIndex,
        spools: Vec<Option<File>>,
        programs: Vec<bool>,
        upper_from: usize,
    ) -> Self {
        ContentReader {
            index,
            spools,
            programs,
            upper_from,
            missing: RefCell::new(None),
        }
    }

    /// An upper-layer file that was needed but unreadable, if any: decisions
    /// made with this reader are then incomplete.
    pub fn missing(&self) -> Option<String> {
        self.missing.borrow().clone()
    }

    fn note_missing(&self, layer: u16, path: &str) {
        if layer as usize >= self.upper_from {
            self.missing
                .borrow_mut()
                .get_or_insert_with(|| path.to_string());
        }
    }

    /// What running `path` (after following symlinks) makes the loader open,
    /// as the layer reader noted it. A file of an upper layer whose listing
    /// carries no notes is unknown: it is recorded as missing.
    pub fn program(&self, path: &str) -> Option<Program> {
        let real = self.index.resolve(path)?;
        let id = self
            .index
            .get(&real)
            .filter(|n| n.ftype == FileType::File)
            .and_then(|n| n.content)?;
        if let Some(p) = self.index.programs.get(&id) {
            return Some((**p).clone());
        }
        let layer = self.index.content(id).layer;
        if !self.programs.get(layer as usize).copied().unwrap_or(false) {
            self.note_missing(layer, &real);
        }
        None
    }

    /// A regular file's bytes (after following symlinks), or `None` when the
    /// path is not a file or its content was not kept (a base layer).
    pub fn open(&self, path: &str) -> Option<Bytes<'_>> {
        let real = self.index.resolve(path)?;
        let node = self.index.get(&real)?;
        if node.ftype != FileType::File {
            return None;
        }
        let id = node.content?;
        if let Some(b) = self.index.captured.get(&id) {
            return Some(Bytes::Captured(b));
        }
        let c = self.index.content(id);
        let Some(file) = self.spools.get(c.layer as usize).and_then(Option::as_ref) else {
            self.note_missing(c.layer, &real);
            return None;
        };
        Some(Bytes::Spool(SpoolSlice::new(file, c.data_offset, c.size)))
    }

    /// A whole (database) file, refusing one over `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self.open(path) {
            None => Ok(None),
            Some(Bytes::Captured(b)) => Ok(Some(b.to_vec())),
            Some(Bytes::Spool(mut s)) => {
                if s.len > limit {
                    return Err(Error::unsupported(
                        format!("/{path}"),
                        format!(
                            "{} bytes, more than the {limit} read for a database file",
                            s.len
                        ),
                    ));
                }
                let mut buf = Vec::with_capacity(s.len as usize);
                s.read_to_end(&mut buf)
                    .map_err(|e| Error::io(format!("reading /{path} from its layer"), e))?;
                Ok(Some(buf))
            }
        }
    }

    /// A database file as UTF-8 text (dpkg's `status`, apk's `installed`).
    pub fn read_text(&self, path: &str, limit: u64) -> Result<Option<String>> {
        self.read(path, limit)?
            .map(|raw| {
                String::from_utf8(raw)
                    .map_err(|_| Error::invalid(format!("/{path}"), "not UTF-8 text"))
            })
            .transpose()
    }
}
