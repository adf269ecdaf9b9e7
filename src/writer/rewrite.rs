//! Writing one new layer of the plan: sorted entries, every parent directory
//! before its children, hard links written as files, whiteouts for base paths
//! the source deleted.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::layer::{LayerWriter, WriteKind, WrittenLayer};
use crate::analysis::{Analysis, Class};
use crate::error::{Error, Result};
use crate::fsindex::Node;
use crate::image::Compression;
use crate::layer::Meta;
use crate::layer::entry::{FileType, parent};
use crate::plan::{Item, Plan, items};

/// Reads `len` bytes at `offset` of a spool without moving a shared cursor.
struct Slice<'a> {
    file: &'a File,
    offset: u64,
    left: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        let got = self.file.read_at(&mut buf[..n], self.offset)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spool ended early",
            ));
        }
        self.offset += got as u64;
        self.left -= got as u64;
        Ok(got)
    }
}

/// Per source layer, its spooled uncompressed tar (when it holds content we write).
pub struct Spools {
    pub files: Vec<Option<File>>,
}

#[derive(Debug)]
pub struct Written {
    pub class: Class,
    pub layer: WrittenLayer,
    pub hardlink_copy_bytes: u64,
    pub whiteouts: u64,
}

/// How new layers are compressed: `threads` compress at once (same output for any number).
#[derive(Clone, Copy, Debug)]
pub struct Encoding {
    pub compression: Compression,
    pub level: Option<i32>,
    pub threads: usize,
}

/// One entry of a new layer, in the order it is written.
pub enum Step<'a> {
    /// A directory, either placed or a parent of something placed.
    Dir(&'a str, Meta),
    Whiteout(&'a str),
    /// A placed non-directory path.
    Node(&'a str, &'a Node),
}

/// Walk the entries of `class`'s new layer exactly as [`write_layer`] writes
/// them (the memo key hashes the same walk).
pub fn walk_layer<'a>(
    a: &'a Analysis,
    plan: &'a Plan,
    class: Class,
    mut f: impl FnMut(Step<'a>) -> Result<()>,
) -> Result<()> {
    let mut emitted: HashSet<&'a str> = HashSet::new();
    for item in items(a, plan, class) {
        let path = match &item {
            Item::Path(p, _) | Item::Whiteout(p) => *p,
        };
        // Parents first, each once, in order from the root.
        let mut missing = Vec::new();
        let mut d = parent(path);
        while !d.is_empty() && !emitted.contains(d) {
            missing.push(d);
            d = parent(d);
        }
        for dir in missing.into_iter().rev() {
            f(Step::Dir(dir, plan.parent_meta(a, dir, class)))?;
            emitted.insert(dir);
        }
        match item {
            Item::Whiteout(p) => f(Step::Whiteout(p))?,
            Item::Path(p, n) if n.ftype == FileType::Dir => {
                f(Step::Dir(p, n.meta.clone()))?;
                emitted.insert(p);
            }
            Item::Path(p, n) => f(Step::Node(p, n))?,
        }
    }
    Ok(())
}

pub fn write_layer(
    a: &Analysis,
    plan: &Plan,
    class: Class,
    spools: &Spools,
    tmp: &Path,
    enc: Encoding,
) -> Result<Written> {
    let mut w = LayerWriter::create_with_threads(tmp, enc.compression, enc.level, enc.threads)?;
    let mut hardlink_copy_bytes = 0;
    let mut whiteouts = 0;
    walk_layer(a, plan, class, |step| {
        match step {
            Step::Dir(p, meta) => w.append(p, WriteKind::Dir, &meta)?,
            Step::Whiteout(p) => {
                w.append(p, WriteKind::Whiteout, &Default::default())?;
                whiteouts += 1;
            }
            Step::Node(p, n) => match n.ftype {
                FileType::Dir => unreachable!("directories are Step::Dir"),
                FileType::Symlink => w.append(
                    p,
                    WriteKind::Symlink(n.target.as_deref().unwrap_or("")),
                    &n.meta,
                )?,
                FileType::Char => w.append(p, WriteKind::Char(n.dev.0, n.dev.1), &n.meta)?,
                FileType::Block => w.append(p, WriteKind::Block(n.dev.0, n.dev.1), &n.meta)?,
                FileType::Fifo => w.append(p, WriteKind::Fifo, &n.meta)?,
                FileType::File if plan.edited.contains_key(p) => {
                    let bytes = plan
                        .edited_content(a, p)
                        .expect("edited paths have content");
                    w.append(
                        p,
                        WriteKind::File {
                            size: bytes.len() as u64,
                            data: &mut &bytes[..],
                        },
                        &n.meta,
                    )?
                }
                FileType::File => {
                    let c = a.index.content(n.content.expect("files have content"));
                    let file = spools.files[c.layer as usize].as_ref().ok_or_else(|| {
                        Error::invalid(format!("/{p}"), "content of a layer that was not spooled")
                    })?;
                    let mut data = Slice {
                        file,
                        offset: c.data_offset,
                        left: c.size,
                    };
                    if n.linked {
                        // Lambda rejects hard-link entries: the link becomes a copy.
                        hardlink_copy_bytes += c.size;
                    }
                    w.append(
                        p,
                        WriteKind::File {
                            size: c.size,
                            data: &mut data,
                        },
                        &n.meta,
                    )?
                }
            },
        }
        Ok(())
    })?;
    Ok(Written {
        class,
        layer: w.finish()?,
        hardlink_copy_bytes,
        whiteouts,
    })
}
