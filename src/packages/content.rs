//! Reading a file of the final filesystem: its captured copy when the layer
//! reader kept one, otherwise straight from the spooled layer, by offset, a
//! buffer at a time (a layer is never loaded whole).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};
use crate::fsindex::FsIndex;
use crate::layer::entry::FileType;

pub struct ContentReader<'a> {
    pub index: &'a FsIndex,
    /// Per source layer, its spooled uncompressed tar, when there is one.
    pub spools: Vec<Option<File>>,
}

/// A file's bytes inside a spool, readable and seekable on their own.
pub struct SpoolSlice<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for SpoolSlice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spool ended early",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for SpoolSlice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// Where a file's bytes are.
pub enum Bytes<'a> {
    Captured(&'a [u8]),
    Spool(SpoolSlice<'a>),
}

impl<'a> ContentReader<'a> {
    pub fn new(index: &'a FsIndex, spools: Vec<Option<File>>) -> Self {
        ContentReader { index, spools }
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
        if c.sparse {
            return None;
        }
        let file = self.spools.get(c.layer as usize)?.as_ref()?;
        Some(Bytes::Spool(SpoolSlice {
            file,
            start: c.data_offset,
            len: c.size,
            pos: 0,
        }))
    }

    /// Whether the content of `path` can be read.
    pub fn readable(&self, path: &str) -> bool {
        self.open(path).is_some()
    }

    /// The first bytes of a file (magic numbers, shebang lines).
    pub fn head(&self, path: &str, n: usize) -> Result<Option<Vec<u8>>> {
        match self.open(path) {
            None => Ok(None),
            Some(Bytes::Captured(b)) => Ok(Some(b[..b.len().min(n)].to_vec())),
            Some(Bytes::Spool(mut s)) => {
                let mut buf = Vec::with_capacity(n);
                (&mut s)
                    .take(n as u64)
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::io(format!("reading /{path} from its layer"), e))?;
                Ok(Some(buf))
            }
        }
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
