//! A layer writer: tar → sha256 (diff_id) → gzip/zstd → sha256 (digest) → file.
//!
//! Headers are built from our metadata model, never copied, so the same files give
//! the same bytes whatever tool wrote the source: ustar, with PAX records only
//! where a value does not fit (long names, big ids, sub-second mtimes, xattrs).
//! Owner names are left empty: runtimes use the numeric ids.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::image::{Compression, MediaType};
use crate::layer::Meta;

/// What to write at a path.
pub enum WriteKind<'a> {
    File {
        size: u64,
        data: &'a mut dyn Read,
    },
    Dir,
    Symlink(&'a str),
    Hardlink(&'a str),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// `.wh.<name>`: delete the path from lower layers.
    Whiteout,
}

enum Compressor {
    None(HashingWriter<BufWriter<File>>),
    Gzip(super::pgzip::ParallelGzip<HashingWriter<BufWriter<File>>>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<BufWriter<File>>>),
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl Compressor {
    fn finish(self) -> io::Result<HashingWriter<BufWriter<File>>> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// A finished layer blob on disk.
#[derive(Debug)]
pub struct WrittenLayer {
    pub path: tempfile::TempPath,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub uncompressed_size: u64,
    pub compression: Compression,
    pub entries: u64,
}

impl WrittenLayer {
    pub fn media_type(&self, docker: bool) -> MediaType {
        MediaType::layer(docker, self.compression)
    }
}

pub struct LayerWriter {
    tar: tar::Builder<HashingWriter<Compressor>>,
    path: tempfile::TempPath,
    compression: Compression,
    entries: u64,
}

pub const DEFAULT_GZIP_LEVEL: u32 = 6;
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

fn put(dst: &mut [u8], s: &[u8]) {
    dst.fill(0);
    dst[..s.len()].copy_from_slice(s);
}

/// A PAX record: "<len> <key>=<value>\n", where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let candidate = body + len.to_string().len();
        if candidate == len {
            break;
        }
        len = candidate;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Split a path into ustar (prefix, name), if it fits.
fn ustar_split(p: &[u8]) -> Option<(&[u8], &[u8])> {
    if p.len() <= 100 {
        return Some((&[], p));
    }
    if p.len() > 256 {
        return None;
    }
    // The prefix must end at a '/', and the rest must fit in 100 bytes.
    let start = p.len().saturating_sub(101);
    for i in start..p.len().min(156) {
        if p[i] == b'/' && p.len() - i - 1 <= 100 && i <= 155 && i > 0 {
            return Some((&p[..i], &p[i + 1..]));
        }
    }
    None
}

const OCTAL8_MAX: u64 = 0o7777777;
const OCTAL12_MAX: u64 = 0o77777777777;

impl LayerWriter {
    pub fn create(dir: &Path, compression: Compression, level: Option<i32>) -> Result<LayerWriter> {
        Self::create_with_threads(dir, compression, level, 1)
    }

    /// `threads` compress at once; the output is the same for any number.
    pub fn create_with_threads(
        dir: &Path,
        compression: Compression,
        level: Option<i32>,
        threads: usize,
    ) -> Result<LayerWriter> {
        let tmp = tempfile::Builder::new()
            .prefix("out-")
            .tempfile_in(dir)
            .with_ctx(|| format!("creating a layer file in {}", dir.display()))?;
        let (file, path) = tmp.into_parts();
        let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let comp = match compression {
            Compression::None => Compressor::None(sink),
            Compression::Gzip => Compressor::Gzip(super::pgzip::ParallelGzip::new(
                sink,
                level.map_or(DEFAULT_GZIP_LEVEL, |l| l.clamp(0, 9) as u32),
                threads,
            )),
            Compression::Zstd => {
                let mut enc =
                    zstd::stream::write::Encoder::new(sink, level.unwrap_or(DEFAULT_ZSTD_LEVEL))
                        .map_err(|e| Error::io("starting zstd", e))?;
                // Output is identical for any worker count >= 1 (but not 0): keep it at 1
                // so it never depends on the machine.
                enc.multithread(1)
                    .map_err(|e| Error::io("starting zstd", e))?;
                Compressor::Zstd(enc)
            }
        };
        let mut tar = tar::Builder::new(HashingWriter::new(comp));
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter {
            tar,
            path,
            compression,
            entries: 0,
        })
    }

    /// Append one entry. `path` is relative, without a trailing slash.
    pub fn append(&mut self, path: &str, kind: WriteKind<'_>, meta: &Meta) -> Result<()> {
        let what = || format!("writing {path} to a layer");
        let mut pax = Vec::new();
        let mut h = tar::Header::new_ustar();
        let (etype, size) = match &kind {
            WriteKind::File { size, .. } => (tar::EntryType::Regular, *size),
            WriteKind::Dir => (tar::EntryType::Directory, 0),
            WriteKind::Symlink(_) => (tar::EntryType::Symlink, 0),
            WriteKind::Hardlink(_) => (tar::EntryType::Link, 0),
            WriteKind::Char(..) => (tar::EntryType::Char, 0),
            WriteKind::Block(..) => (tar::EntryType::Block, 0),
            WriteKind::Fifo => (tar::EntryType::Fifo, 0),
            WriteKind::Whiteout => (tar::EntryType::Regular, 0),
        };
        h.set_entry_type(etype);

        let name = match kind {
            WriteKind::Whiteout => match path.rsplit_once('/') {
                Some((dir, base)) => format!("{dir}/.wh.{base}"),
                None => format!(".wh.{path}"),
            },
            WriteKind::Dir if path.is_empty() => "./".to_string(),
            WriteKind::Dir => format!("{path}/"),
            _ => path.to_string(),
        };
        match ustar_split(name.as_bytes()) {
            Some((prefix, n)) => {
                let u = h.as_ustar_mut().expect("ustar header");
                put(&mut u.prefix, prefix);
                put(&mut u.name, n);
            }
            None => {
                pax_record(&mut pax, "path", name.as_bytes());
                let u = h.as_ustar_mut().expect("ustar header");
                // A readable stand-in for readers that ignore PAX.
                let tail = &name.as_bytes()[name.len().saturating_sub(99)..];
                put(&mut u.name, tail);
            }
        }
        let link = match &kind {
            WriteKind::Symlink(t) | WriteKind::Hardlink(t) => Some(*t),
            _ => None,
        };
        if let Some(t) = link {
            if t.len() <= 100 {
                put(&mut h.as_old_mut().linkname, t.as_bytes());
            } else {
                pax_record(&mut pax, "linkpath", t.as_bytes());
                put(&mut h.as_old_mut().linkname, &t.as_bytes()[..100]);
            }
        }

        let (mode, uid, gid, mtime, nsec) = if matches!(kind, WriteKind::Whiteout) {
            (0o644, 0, 0, 0, 0)
        } else {
            (meta.mode, meta.uid, meta.gid, meta.mtime, meta.mtime_nsec)
        };
        h.set_mode(mode);
        for (key, v, field) in [("uid", uid, 0), ("gid", gid, 1)] {
            let stored = if v > OCTAL8_MAX {
                pax_record(&mut pax, key, v.to_string().as_bytes());
                0
            } else {
                v
            };
            if field == 0 {
                h.set_uid(stored)
            } else {
                h.set_gid(stored)
            }
        }
        if mtime < 0 || mtime as u64 > OCTAL12_MAX || nsec != 0 {
            let v = if nsec == 0 {
                mtime.to_string()
            } else if mtime < 0 {
                // PAX times are decimal: -1.25 is 1.25 s before the epoch.
                let total = mtime as i128 * 1_000_000_000 + nsec as i128;
                let neg = -total;
                format!("-{}.{:09}", neg / 1_000_000_000, neg % 1_000_000_000)
            } else {
                format!("{mtime}.{nsec:09}")
            };
            pax_record(&mut pax, "mtime", v.as_bytes());
        }
        h.set_mtime(mtime.clamp(0, OCTAL12_MAX as i64) as u64);
        if size > OCTAL12_MAX {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
            h.set_size(0);
        } else {
            h.set_size(size);
        }
        match &kind {
            WriteKind::Char(ma, mi) | WriteKind::Block(ma, mi) => {
                h.set_device_major(*ma).with_ctx(what)?;
                h.set_device_minor(*mi).with_ctx(what)?;
            }
            _ => {
                h.set_device_major(0).with_ctx(what)?;
                h.set_device_minor(0).with_ctx(what)?;
            }
        }
        if !matches!(kind, WriteKind::Whiteout)
            && let Some(x) = &meta.xattrs
        {
            for (k, v) in x.iter() {
                pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
            }
        }
        h.set_cksum();

        if !pax.is_empty() {
            let mut ph = tar::Header::new_ustar();
            ph.set_entry_type(tar::EntryType::XHeader);
            let pname = format!("PaxHeaders/{}", crate::layer::entry::basename(&name));
            let pname = &pname.as_bytes()[..pname.len().min(100)];
            put(&mut ph.as_ustar_mut().expect("ustar").name, pname);
            ph.set_mode(0o644);
            ph.set_size(pax.len() as u64);
            ph.set_mtime(0);
            ph.set_cksum();
            self.tar.append(&ph, &pax[..]).with_ctx(what)?;
        }
        match kind {
            WriteKind::File { size, data } => {
                let mut limited = data.take(size);
                self.tar.append(&h, &mut limited).with_ctx(what)?;
                if limited.limit() != 0 {
                    return Err(Error::invalid(
                        what(),
                        format!("source data ended {} bytes early", limited.limit()),
                    ));
                }
            }
            _ => self.tar.append(&h, io::empty()).with_ctx(what)?,
        }
        self.entries += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<WrittenLayer> {
        self.tar.finish().ctx("finishing a layer")?;
        let hashing = self.tar.into_inner().ctx("finishing a layer")?;
        let (comp, diff_id, uncompressed_size) = hashing.finish();
        let sink = comp.finish().ctx("finishing layer compression")?;
        let (mut buf, digest, size) = sink.finish();
        buf.flush().ctx("writing a layer")?;
        let file = buf
            .into_inner()
            .map_err(|e| Error::io("writing a layer", e.into_error()))?;
        file.sync_data().ctx("writing a layer")?;
        Ok(WrittenLayer {
            path: self.path,
            digest,
            diff_id,
            size,
            uncompressed_size,
            compression: self.compression,
            entries: self.entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", b"a");
        assert_eq!(v, b"9 path=a\n");
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'x'; 95]);
        let s = String::from_utf8(v).unwrap();
        let n: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, s.len());
    }

    #[test]
    fn ustar_split_prefers_name_then_prefix() {
        assert_eq!(ustar_split(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (p, n) = ustar_split(long.as_bytes()).unwrap();
        assert_eq!((p.len(), n.len()), (120, 50));
        assert!(ustar_split("x".repeat(150).as_bytes()).is_none());
    }
}
