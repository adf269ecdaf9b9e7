//! The streaming layer reader.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::mpsc;

use super::compression::decoder;
use super::entry::{Entry, EntryKind, Meta, normalize_path};
use super::tar::{Header, TarError, TarReader, flag};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result, from_io, to_io};
use crate::image::{Compression, Descriptor, sniff_compression as sniff};
use indicatif::ProgressBar;

/// Largest file whose content the reader keeps for the analysis (RECORD files).
pub const CAPTURE_MAX: u64 = 1 << 20;
/// Most captured bytes per layer (real layers hold a few MiB of RECORD files).
pub const CAPTURE_BUDGET: u64 = 32 << 20;

#[derive(Clone)]
pub struct ReadOptions {
    /// Hash every file's content (xxh3-128; needed to verify a rewrite).
    pub hash_contents: bool,
    /// Keep a copy of the uncompressed layer in this directory (for rewriting).
    pub spool_dir: Option<std::path::PathBuf>,
    /// Which small files to keep the content of.
    pub capture: fn(&str) -> bool,
    /// Refuse a layer that decompresses to more than this (decompression bombs).
    pub max_layer_bytes: u64,
    /// Refuse a layer with more entries than this (memory grows with entries).
    pub max_entries: usize,
    /// Note what each ELF file and script needs to run (see [`super::program`]);
    /// ELF files are only understood when the layer is spooled.
    pub programs: bool,
    pub progress: Option<ProgressBar>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            hash_contents: false,
            spool_dir: None,
            capture: |_| false,
            max_layer_bytes: 32 << 30,
            max_entries: 2_000_000,
            programs: false,
            progress: None,
        }
    }
}

/// Everything one pass over a layer learned.
pub struct LayerListing {
    pub digest: Digest,
    pub diff_id: Digest,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    /// What the bytes are, by magic (the media type was checked against it).
    pub compression: Compression,
    pub entries: Vec<Entry>,
    /// The uncompressed tar, when spooling was asked for.
    pub spool: Option<tempfile::TempPath>,
    /// Every ELF file and script carries its [`Entry::program`]: what the
    /// function loads can be told from this listing alone, without the spool.
    pub programs: bool,
}

/// Counts bytes, reports progress, and stops a decompression bomb.
struct Limit<R> {
    inner: R,
    count: u64,
    max: u64,
    what: String,
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.max {
            return Err(to_io(Error::invalid(
                &self.what,
                format!(
                    "decompresses to more than {} bytes (the per-layer limit; raise it with --max-layer-size)",
                    self.max
                ),
            )));
        }
        Ok(n)
    }
}

struct Tee<R, W> {
    inner: R,
    out: Option<W>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = self.out.as_mut() {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

struct Progress<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}

/// Read one layer blob from `source`, verifying its digest and diff_id.
pub fn read_layer(
    source: &dyn crate::transport::Source,
    desc: &Descriptor,
    diff_id: &Digest,
    opts: &ReadOptions,
) -> Result<LayerListing> {
    let raw = source.open_blob(desc)?;
    read_layer_from(
        raw,
        desc,
        diff_id,
        opts,
        &format!("layer {} of {}", desc.digest, source.describe()),
    )
}

/// Read a layer from any byte stream (a source blob or a file we just wrote).
pub fn read_layer_from(
    raw: Box<dyn Read + Send>,
    desc: &Descriptor,
    diff_id: &Digest,
    opts: &ReadOptions,
    what: &str,
) -> Result<LayerListing> {
    let declared = desc.media_type.layer_compression().ok_or_else(|| {
        Error::unsupported(
            what,
            format!("unknown layer media type '{}'", desc.media_type),
        )
    })?;
    let compressed = VerifyingReader::new(
        Progress {
            inner: raw,
            bar: opts.progress.clone(),
        },
        Some((desc.digest.clone(), Some(desc.size))),
        what.to_string(),
    );
    let mut compressed = BufReader::with_capacity(256 * 1024, compressed);
    let head = io::BufRead::fill_buf(&mut compressed).map_err(|e| from_io(what, e))?;
    let sniffed = sniff(head);
    // An empty blob has no magic; only an uncompressed declaration makes sense for it.
    if !head.is_empty() && sniffed != declared {
        return Err(Error::invalid(
            what,
            format!(
                "media type {} says {declared}, but the content is {sniffed}",
                desc.media_type
            ),
        ));
    }

    let spool = match &opts.spool_dir {
        Some(dir) => Some(
            tempfile::Builder::new()
                .prefix("layer-")
                .tempfile_in(dir)
                .with_ctx(|| format!("creating a spool file in {}", dir.display()))?,
        ),
        None => None,
    };
    let (spool_file, spool_path) = match spool {
        Some(t) => {
            let (f, p) = t.into_parts();
            (Some(BufWriter::with_capacity(1 << 20, f)), Some(p))
        }
        None => (None, None),
    };

    // Three stages per layer, on their own threads, so one big layer uses both
    // cores: (1) read and hash the blob, (2) decompress, (3) hash, spool and parse
    // the tar stream. Errors (a digest mismatch) travel down the pipe in order.
    let (raw_tx, raw_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    let (tar_tx, tar_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    let (parsed, compressed_size) = std::thread::scope(|s| {
        let reader = s.spawn(move || -> u64 {
            let mut compressed = compressed;
            pump(&mut compressed, &raw_tx);
            compressed.get_ref().bytes_read()
        });
        s.spawn(move || {
            let mut raw = BufReader::with_capacity(CHUNK, ChannelReader::new(raw_rx));
            let result = decoder(&mut raw, declared).map(|mut dec| {
                pump(&mut dec, &tar_tx);
            });
            match result {
                // Whatever follows the compressed stream must still be read for the digest.
                Ok(()) => {
                    if let Err(e) = io::copy(&mut raw, &mut io::sink()) {
                        let _ = tar_tx.send(Err(e));
                    }
                }
                Err(e) => {
                    let _ = tar_tx.send(Err(e));
                }
            }
        });
        let parsed = parse(ChannelReader::new(tar_rx), diff_id, spool_file, opts, what);
        (
            parsed,
            reader.join().expect("the reading thread does not panic"),
        )
    });
    let (entries, uncompressed_size) = parsed?;
    let programs = opts.programs && spool_path.is_some();
    Ok(LayerListing {
        digest: desc.digest.clone(),
        diff_id: diff_id.clone(),
        compressed_size,
        uncompressed_size,
        compression: if desc.size == 0 { declared } else { sniffed },
        entries,
        spool: spool_path,
        programs,
    })
}

const CHUNK: usize = 256 * 1024;

/// Send everything `r` yields down `tx` in chunks, then its error if it fails.
/// Stops quietly when the receiver is gone (its own error is the one to report).
fn pump(r: &mut impl Read, tx: &mpsc::SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut buf = Vec::with_capacity(CHUNK);
        match r.by_ref().take(CHUNK as u64).read_to_end(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// The receiving end of a pipeline stage, as a reader.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Hash, spool and parse the uncompressed tar stream.
fn parse(
    input: ChannelReader,
    diff_id: &Digest,
    spool: Option<BufWriter<File>>,
    opts: &ReadOptions,
    what: &str,
) -> Result<(Vec<Entry>, u64)> {
    let verified = VerifyingReader::new(
        input,
        Some((diff_id.clone(), None)),
        format!("{what}: uncompressed content (diff_id)"),
    );
    let limited = Limit {
        inner: verified,
        count: 0,
        max: opts.max_layer_bytes,
        what: what.to_string(),
    };
    let tee = Tee {
        inner: limited,
        out: spool,
    };
    let mut capture_budget = CAPTURE_BUDGET;
    let mut tar = TarReader::new(tee);
    let mut entries = Vec::new();
    let mut elf = Vec::new();
    while let Some(h) = tar.next_header().map_err(|e| tar_error(what, e))? {
        if let Some((entry, is_elf)) = convert(h, &mut tar, opts, what, &mut capture_budget)? {
            if is_elf {
                elf.push(entries.len());
            }
            if entries.len() >= opts.max_entries {
                return Err(Error::invalid(
                    what,
                    format!(
                        "more than {} entries in one layer (raise the limit with --max-entries)",
                        opts.max_entries
                    ),
                ));
            }
            entries.push(entry);
        }
    }
    // The reader stops at the end-of-archive marker; the padding after it is
    // part of the diff_id, so hash to EOF.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| from_io(what, e))?;
    if let Some(mut f) = rest.out.take() {
        f.flush().with_ctx(|| format!("{what}: writing spool"))?;
        if opts.programs {
            read_dynamic_sections(f.get_ref(), &mut entries, &elf);
        }
    }
    Ok((entries, rest.inner.count))
}

fn tar_error(what: &str, e: TarError) -> Error {
    match e {
        TarError::Io(e) => from_io(format!("{what}: reading tar"), e),
        TarError::Header(m) => Error::invalid(what, format!("malformed tar header: {m}")),
        TarError::Refused(m) => Error::unsupported(what, m),
    }
}

/// ELF files were recognised by their first bytes while streaming; their
/// dynamic sections are read from the spool, where seeking is possible. A
/// static or unreadable ELF file needs nothing and gets no note.
fn read_dynamic_sections(spool: &File, entries: &mut [Entry], elf: &[usize]) {
    for &i in elf {
        let e = &mut entries[i];
        let slice = super::program::SpoolSlice::new(spool, e.data_offset, e.size);
        e.program =
            super::program::dynamic(slice).map(|d| Box::new(super::program::Program::Elf(d)));
    }
}

/// Turn one header into an [`Entry`], reading (hashing, capturing) its data, or
/// `None` for entries that carry no file (AUFS bookkeeping). The flag says the
/// entry is an ELF file whose dynamic section is still to be read.
fn convert(
    h: Header,
    data: &mut impl Read,
    opts: &ReadOptions,
    what: &str,
    capture_budget: &mut u64,
) -> Result<Option<(Entry, bool)>> {
    let path = normalize_path(&h.name)
        .map_err(|m| Error::invalid(what, format!("hostile tar entry: {m}")))?;
    let int = |v: i64, field: &str| -> Result<u64> {
        u64::try_from(v).map_err(|_| {
            Error::invalid(
                what,
                format!("tar entry {path:?} has a negative {field} ({v})"),
            )
        })
    };
    let mut xattrs: Vec<(Box<str>, Box<[u8]>)> = Vec::with_capacity(h.xattrs.len());
    for (k, v) in h.xattrs {
        let k = String::from_utf8(k).map_err(|_| {
            Error::invalid(
                what,
                format!("tar entry {path:?} has an xattr name that is not UTF-8"),
            )
        })?;
        xattrs.push((k.into(), v.into()));
    }
    xattrs.sort();
    let meta = Meta {
        mode: (h.mode & 0o7777) as u32,
        uid: int(h.uid, "uid")?,
        gid: int(h.gid, "gid")?,
        mtime: h.mtime,
        mtime_nsec: h.mtime_nsec,
        xattrs: (!xattrs.is_empty()).then(|| xattrs.into_boxed_slice()),
    };
    let size = int(h.size, "size")?;
    let data_offset = h.data_offset;

    if let Some(w) = Entry::from_whiteout_name(&path, &meta, data_offset) {
        return w
            .map(|e| e.map(|e| (e, false)))
            .map_err(|m| Error::invalid(what, m));
    }
    if path.is_empty() && h.typeflag != flag::DIR {
        return Err(Error::invalid(
            what,
            "hostile tar entry: a non-directory entry for the root",
        ));
    }

    let link_name = || -> Result<Box<str>> {
        let s = std::str::from_utf8(&h.linkname)
            .map_err(|_| Error::invalid(what, format!("link target of {path:?} is not UTF-8")))?;
        if s.contains('\0') || s.is_empty() {
            return Err(Error::invalid(
                what,
                format!("link {path:?} has an empty or NUL target"),
            ));
        }
        Ok(s.into())
    };
    let device = |v: i64| {
        u32::try_from(v).map_err(|_| {
            Error::invalid(
                what,
                format!("device {path:?} has an out-of-range number {v}"),
            )
        })
    };
    let kind = match h.typeflag {
        flag::REG => EntryKind::File,
        // The tar reader would expand sparse holes itself, without any limit: a
        // 91-byte layer can declare a petabyte of zeros. OCI layers should not use them.
        flag::GNU_SPARSE => {
            return Err(Error::unsupported(
                what,
                format!(
                    "hostile or unsupported tar entry: {path:?} is a GNU sparse file (OCI layers should not use sparse files)"
                ),
            ));
        }
        flag::DIR => EntryKind::Dir,
        flag::SYMLINK => EntryKind::Symlink(link_name()?),
        flag::LINK => {
            let target = link_name()?;
            let norm = normalize_path(target.as_bytes()).map_err(|m| {
                Error::invalid(
                    what,
                    format!("hostile tar entry: hard link {path:?} to {m}"),
                )
            })?;
            EntryKind::Hardlink(norm.into())
        }
        flag::CHAR => EntryKind::Char(device(h.devmajor)?, device(h.devminor)?),
        flag::BLOCK => EntryKind::Block(device(h.devmajor)?, device(h.devminor)?),
        flag::FIFO => EntryKind::Fifo,
        // Go's reader hands these to containerd, which refuses any type it does not
        // unpack ("unhandled tar header type"): contiguous files ('7') included.
        other => {
            return Err(Error::unsupported(
                what,
                format!(
                    "tar entry {path:?} has type {:?}, which containerd does not unpack",
                    other as char
                ),
            ));
        }
    };

    let mut content_hash = None;
    let mut captured = None;
    let mut program = None;
    let mut is_elf = false;
    if kind == EntryKind::File {
        // Kept in memory, so bounded per layer whatever the layer's size.
        let capture = size <= CAPTURE_MAX && size <= *capture_budget && (opts.capture)(&path);
        if capture {
            *capture_budget -= size;
        }
        if capture || opts.hash_contents || opts.programs {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            let mut keep = Vec::new();
            let mut head = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = data
                    .read(&mut buf)
                    .map_err(|err| from_io(format!("{what}: reading {path}"), err))?;
                if n == 0 {
                    break;
                }
                if opts.hash_contents {
                    hasher.update(&buf[..n]);
                }
                if capture {
                    keep.extend_from_slice(&buf[..n]);
                }
                if opts.programs && head.len() < super::program::HEAD {
                    let take = n.min(super::program::HEAD - head.len());
                    head.extend_from_slice(&buf[..take]);
                }
            }
            match super::program::from_head(&head) {
                Some(Some(p)) => program = Some(Box::new(p)),
                Some(None) => is_elf = true,
                None => {}
            }
            if opts.hash_contents {
                content_hash = Some(hasher.digest128());
            }
            if capture {
                captured = Some(keep.into_boxed_slice());
            }
        }
    }
    Ok(Some((
        Entry {
            path: path.into(),
            size: if kind == EntryKind::File { size } else { 0 },
            kind,
            meta,
            data_offset,
            content_hash,
            captured,
            program,
        },
        is_elf,
    )))
}

/// Open a spooled layer for random access.
pub fn open_spool(path: &Path) -> Result<File> {
    File::open(path).with_ctx(|| format!("opening spool {}", path.display()))
}
