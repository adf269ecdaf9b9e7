//! A streaming tar reader that reads headers the way Go's `archive/tar` does,
//! because that is the reader containerd, Docker, BuildKit and umoci unpack
//! layers with: what Lambda's workers see is what Go reads. Where Go accepts a
//! header, this reads the same path, type, size and metadata; where reading it
//! as Go does would be unsafe (NUL bytes in names or xattr keys, sparse files),
//! the caller refuses it. Never a third interpretation. The table of quirks is
//! in docs/decisions.md ("Reading tar headers: Go's archive/tar is the reference").
//!
//! Only headers are held in memory (at most [`SPECIAL_MAX`] per extension
//! record, as Go); file data streams through [`TarReader`]'s `Read`.

use std::io::{self, Read};

/// Go's `maxSpecialFileSize`: the largest PAX or GNU long-name record it reads.
pub const SPECIAL_MAX: u64 = 1 << 20;

const BLOCK: usize = 512;

/// Typeflags, as Go names them.
pub mod flag {
    pub const REG: u8 = b'0';
    /// Deprecated regular file; a trailing slash makes it a directory.
    pub const REG_A: u8 = 0;
    pub const LINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIR: u8 = b'5';
    pub const FIFO: u8 = b'6';
    pub const CONT: u8 = b'7';
    pub const PAX_LOCAL: u8 = b'x';
    pub const PAX_GLOBAL: u8 = b'g';
    pub const GNU_LONG_NAME: u8 = b'L';
    pub const GNU_LONG_LINK: u8 = b'K';
    pub const GNU_SPARSE: u8 = b'S';
}

/// One file header, after extension records (PAX, GNU long names) are merged.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    /// As Go leaves it: `'\0'` is already turned into `'0'` or `'5'`.
    pub typeflag: u8,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub devmajor: i64,
    pub devminor: i64,
    /// `SCHILY.xattr.*` records (non-empty values, as Go's `Header.Xattrs`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The entry uses GNU or PAX sparse records.
    pub sparse: bool,
    /// Offset of the entry's data in the uncompressed stream.
    pub data_offset: u64,
}

/// Why a header could not be read. Messages say what Go would say, in words.
#[derive(Debug)]
pub enum TarError {
    Io(io::Error),
    /// Go's `ErrHeader` (and `ErrFieldTooLong`): the archive is malformed.
    Header(String),
    /// Read as Go would, but refused: unsafe to unpack (NUL bytes, sparse files).
    Refused(String),
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::Io(e) => write!(f, "{e}"),
            TarError::Header(m) | TarError::Refused(m) => f.write_str(m),
        }
    }
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

fn bad(m: impl Into<String>) -> TarError {
    TarError::Header(m.into())
}

pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
    done: bool,
}

/// A C string: everything up to the first NUL (Go's `parseString`).
fn cstr(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// Go's `parseOctal`: surrounding spaces and NULs trimmed; empty means 0 (an
/// all-NUL field, as some archivers write); the digits end at a NUL.
fn octal(b: &[u8], field: &str) -> Result<i64, TarError> {
    let start = b.iter().position(|&c| c != b' ' && c != 0);
    let Some(start) = start else { return Ok(0) };
    let end = b.iter().rposition(|&c| c != b' ' && c != 0).unwrap() + 1;
    let digits = cstr(&b[start..end]);
    let s = std::str::from_utf8(digits).map_err(|_| bad(format!("{field} is not a number")))?;
    u64::from_str_radix(s, 8)
        .ok()
        .filter(|_| !s.starts_with('+') && !s.is_empty())
        .map(|v| v as i64)
        .ok_or_else(|| {
            bad(format!(
                "{field} {:?} is not an octal number",
                String::from_utf8_lossy(&b[start..end])
            ))
        })
}

/// Go's `parseNumeric`: base-256 (two's complement, big endian) when the top
/// bit is set, octal otherwise.
fn numeric(b: &[u8], field: &str) -> Result<i64, TarError> {
    if let Some(&first) = b.first()
        && first & 0x80 != 0
    {
        let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return Err(bad(format!("{field} overflows a 64-bit number")));
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 > 0 {
            return Err(bad(format!("{field} overflows a 64-bit number")));
        }
        return Ok(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    octal(b, field)
}

/// The header checksum, counting the checksum field as spaces, both as
/// unsigned and as signed bytes (old archivers used signed sums; Go accepts both).
fn checksums(b: &[u8; BLOCK]) -> (i64, i64) {
    let mut unsigned = 0i64;
    let mut signed = 0i64;
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    (unsigned, signed)
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

fn format(b: &[u8; BLOCK]) -> Result<Format, TarError> {
    let sum = octal(&b[148..156], "header checksum")
        .map_err(|_| bad("header checksum field is not a number"))?;
    let (u, s) = checksums(b);
    if sum != u && sum != s {
        return Err(bad(format!(
            "header checksum {sum} does not match the header ({u})"
        )));
    }
    let magic = &b[257..263];
    let version = &b[263..265];
    Ok(if magic == b"ustar\0" && &b[508..512] == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::Ustar
    } else if magic == b"ustar " && version == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    })
}

/// A header-only type carries no data, whatever its size field says.
fn header_only(t: u8) -> bool {
    matches!(
        t,
        flag::LINK | flag::SYMLINK | flag::CHAR | flag::BLOCK | flag::DIR | flag::FIFO
    )
}

/// Go's `parsePAXTime`: seconds, then up to nine fraction digits.
fn pax_time(v: &[u8]) -> Result<(i64, u32), TarError> {
    let s = std::str::from_utf8(v).map_err(|_| bad("PAX mtime is not UTF-8"))?;
    let err = || bad(format!("PAX mtime {s:?} is not a number"));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut secs: i64 = go_int(secs).ok_or_else(err)?;
    if frac.is_empty() {
        return Ok((secs, 0));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut nsec: u32 = digits.parse().expect("nine digits");
    // "-1.5" is 1.5 s before the epoch: floor the seconds, positive fraction.
    if secs_negative(s) && nsec > 0 {
        secs -= 1;
        nsec = 1_000_000_000 - nsec;
    }
    Ok((secs, nsec))
}

fn secs_negative(s: &str) -> bool {
    s.starts_with('-')
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then decimal digits.
fn go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Extension records that apply to the next file header.
#[derive(Default)]
struct Pending {
    pax: Records,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            pos: 0,
            remaining: 0,
            pad: 0,
            done: false,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.inner.read(&mut buf[..want])?;
            if got == 0 {
                return Err(TarError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.pos += got as u64;
            n -= got as u64;
        }
        Ok(())
    }

    /// Read a whole block; `Ok(false)` at a clean end of input (no bytes).
    fn block(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += BLOCK as u64;
        Ok(true)
    }

    /// The data of the current (special) entry, whole; bounded like Go's.
    fn special(&mut self, what: &str) -> Result<Vec<u8>, TarError> {
        if self.remaining > SPECIAL_MAX {
            return Err(bad(format!(
                "hostile tar entry: an extension record ({what}) of more than {SPECIAL_MAX} bytes"
            )));
        }
        let mut v = Vec::with_capacity(self.remaining as usize);
        self.by_ref().read_to_end(&mut v)?;
        if (v.len() as u64) < self.remaining {
            return Err(TarError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(v)
    }

    /// The next file header, or `None` at the end of the archive. Unread data of
    /// the previous entry is skipped.
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        let mut pending = Pending::default();
        loop {
            let skip = self.remaining + self.pad;
            self.remaining = 0;
            self.pad = 0;
            self.skip(skip)?;

            let mut blk = [0u8; BLOCK];
            if !self.block(&mut blk)? {
                self.done = true;
                return Ok(None);
            }
            if blk.iter().all(|&b| b == 0) {
                // One zero block then EOF, or two zero blocks: the end.
                // A zero block followed by a header is malformed (Go: ErrHeader).
                if !self.block(&mut blk)? || blk.iter().all(|&b| b == 0) {
                    self.done = true;
                    return Ok(None);
                }
                return Err(bad("a zero block followed by a header"));
            }
            let mut h = self.parse_block(&blk)?;
            self.set_data(&h)?;
            match h.typeflag {
                flag::PAX_LOCAL | flag::PAX_GLOBAL => {
                    let global = h.typeflag == flag::PAX_GLOBAL;
                    let data = self.special("PAX")?;
                    let records = parse_pax(&data)?;
                    if global {
                        // Go hands a global header to its caller as an entry of its own;
                        // containerd ignores it. Its records do not apply to later entries.
                        pending = Pending::default();
                        continue;
                    }
                    // A second PAX header replaces the first (Go keeps only the last map).
                    pending.pax = records;
                }
                flag::GNU_LONG_NAME => {
                    let data = self.special("GNU long name")?;
                    pending.long_name = Some(cstr(&data).to_vec());
                }
                flag::GNU_LONG_LINK => {
                    let data = self.special("GNU long link name")?;
                    pending.long_link = Some(cstr(&data).to_vec());
                }
                _ => {
                    merge_pax(&mut h, &pending.pax)?;
                    // Go applies GNU long names after the PAX records.
                    if let Some(n) = pending.long_name.take().filter(|n| !n.is_empty()) {
                        h.name = n;
                    }
                    if let Some(l) = pending.long_link.take().filter(|l| !l.is_empty()) {
                        h.linkname = l;
                    }
                    if h.typeflag == flag::REG_A {
                        h.typeflag = if h.name.ends_with(b"/") {
                            flag::DIR
                        } else {
                            flag::REG
                        };
                    }
                    // PAX may have changed the size, and the type may now be header-only.
                    self.set_data(&h)?;
                    h.data_offset = self.pos;
                    return Ok(Some(h));
                }
            }
        }
    }

    fn set_data(&mut self, h: &Header) -> Result<(), TarError> {
        let size = if header_only(h.typeflag) { 0 } else { h.size };
        if size < 0 {
            return Err(bad(format!("negative size {size}")));
        }
        let size = size as u64;
        self.remaining = size;
        self.pad = size.wrapping_neg() & (BLOCK as u64 - 1);
        Ok(())
    }

    fn parse_block(&self, b: &[u8; BLOCK]) -> Result<Header, TarError> {
        let fmt = format(b)?;
        let mut h = Header {
            name: cstr(&b[0..100]).to_vec(),
            mode: numeric(&b[100..108], "mode")?,
            uid: numeric(&b[108..116], "uid")?,
            gid: numeric(&b[116..124], "gid")?,
            size: numeric(&b[124..136], "size")?,
            mtime: numeric(&b[136..148], "mtime")?,
            typeflag: b[156],
            linkname: cstr(&b[157..257]).to_vec(),
            ..Header::default()
        };
        if fmt == Format::V7 {
            return Ok(h);
        }
        h.devmajor = numeric(&b[329..337], "device major")?;
        h.devminor = numeric(&b[337..345], "device minor")?;
        let prefix: &[u8] = match fmt {
            Format::Ustar => cstr(&b[345..500]),
            Format::Star => cstr(&b[345..476]),
            Format::Gnu => {
                // GNU headers keep atime and ctime where USTAR has its prefix. Go
                // (since 1.8) reads the prefix there only when those fields do not
                // parse as numbers: what an old Go writer produced (golang/go#12594).
                let unparsable = |f: &[u8]| f[0] != 0 && numeric(f, "GNU atime/ctime").is_err();
                if unparsable(&b[345..357]) || unparsable(&b[357..369]) {
                    let p = cstr(&b[345..500]);
                    if p.is_ascii() { p } else { &[] }
                } else {
                    &[]
                }
            }
            Format::V7 => unreachable!(),
        };
        if !prefix.is_empty() {
            let mut name = prefix.to_vec();
            name.push(b'/');
            name.extend_from_slice(&h.name);
            h.name = name;
        }
        if h.typeflag == flag::GNU_SPARSE {
            h.sparse = true;
        }
        Ok(h)
    }
}

/// PAX records in the order they came, later duplicates replacing earlier ones.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Go's `parsePAX` and `parsePAXRecord`: `"%d %s=%s\n"` records.
fn parse_pax(mut s: &[u8]) -> Result<Records, TarError> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let malformed = || bad("malformed PAX record");
    while !s.is_empty() {
        let sp = s.iter().position(|&c| c == b' ').ok_or_else(malformed)?;
        let n = std::str::from_utf8(&s[..sp])
            .ok()
            .and_then(go_int)
            .ok_or_else(malformed)?;
        if n < 5 || n as usize > s.len() || (n as usize) <= sp + 1 {
            return Err(malformed());
        }
        let n = n as usize;
        let (rec, nl, rest) = (&s[sp + 1..n - 1], s[n - 1], &s[n..]);
        if nl != b'\n' {
            return Err(malformed());
        }
        let eq = rec.iter().position(|&c| c == b'=').ok_or_else(malformed)?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        if k.is_empty() {
            return Err(malformed());
        }
        if k.starts_with(b"GNU.sparse.") {
            return Err(TarError::Refused(
                "hostile or unsupported tar entry: a PAX-format sparse file (GNU.sparse.* records; OCI layers should not use sparse files)".into(),
            ));
        }
        let name_key = matches!(k, b"path" | b"linkpath" | b"uname" | b"gname");
        if (name_key && v.contains(&0)) || (!name_key && k.contains(&0)) {
            // Go's reader refuses these records (validPAXRecord); so do we, and say why.
            let shown = String::from_utf8_lossy(k);
            return Err(TarError::Refused(format!(
                "hostile tar entry: a NUL byte in the PAX record {shown:?}"
            )));
        }
        out.retain(|(ok, _)| ok != k);
        out.push((k.to_vec(), v.to_vec()));
        s = rest;
    }
    Ok(out)
}

/// Go's `mergePAX`: records override the header; an empty value keeps the
/// header's own.
fn merge_pax(h: &mut Header, records: &Records) -> Result<(), TarError> {
    for (k, v) in records {
        if v.is_empty() {
            continue;
        }
        let int = |what: &str| -> Result<i64, TarError> {
            std::str::from_utf8(v).ok().and_then(go_int).ok_or_else(|| {
                bad(format!(
                    "PAX {what} {:?} is not a number",
                    String::from_utf8_lossy(v)
                ))
            })
        };
        match k.as_slice() {
            b"path" => h.name = v.clone(),
            b"linkpath" => h.linkname = v.clone(),
            b"uid" => h.uid = int("uid")?,
            b"gid" => h.gid = int("gid")?,
            b"size" => h.size = int("size")?,
            b"mtime" => (h.mtime, h.mtime_nsec) = pax_time(v)?,
            b"atime" | b"ctime" => {
                pax_time(v)?;
            }
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    h.xattrs.retain(|(n, _)| n.as_slice() != name);
                    h.xattrs.push((name.to_vec(), v.clone()));
                }
            }
        }
    }
    Ok(())
}

impl<R: Read> Read for TarReader<R> {
    /// The current entry's data.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        b[100..108].copy_from_slice(b"0000644\0");
        b[108..116].copy_from_slice(b"0000000\0");
        b[116..124].copy_from_slice(b"0000000\0");
        b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        b[136..148].copy_from_slice(b"00000000000\0");
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        seal(&mut b);
        b
    }

    fn seal(b: &mut [u8; BLOCK]) {
        b[148..156].copy_from_slice(b"        ");
        let (u, _) = checksums(b);
        b[148..156].copy_from_slice(format!("{u:06o}\0 ").as_bytes());
    }

    fn archive(parts: &[&[u8]]) -> Vec<u8> {
        let mut v: Vec<u8> = parts.concat();
        v.extend_from_slice(&[0u8; 1024]);
        v
    }

    fn data(content: &[u8]) -> Vec<u8> {
        let mut v = content.to_vec();
        v.resize(content.len().div_ceil(BLOCK) * BLOCK, 0);
        v
    }

    /// One PAX record, its length prefix included.
    fn rec(k: &[u8], v: &[u8]) -> Vec<u8> {
        let body = k.len() + v.len() + 3;
        let mut n = body + 1;
        while n != body + n.to_string().len() {
            n = body + n.to_string().len();
        }
        let mut r = format!("{n} ").into_bytes();
        r.extend_from_slice(k);
        r.push(b'=');
        r.extend_from_slice(v);
        r.push(b'\n');
        r
    }

    fn all(bytes: &[u8]) -> Result<Vec<Header>, TarError> {
        let mut r = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(h) = r.next_header()? {
            out.push(h);
        }
        Ok(out)
    }

    #[test]
    fn numeric_fields_read_as_go_does() {
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0", "f").unwrap(), 0);
        assert_eq!(numeric(b"  0644 \0", "f").unwrap(), 0o644);
        assert_eq!(numeric(b"0000644\0", "f").unwrap(), 0o644);
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "f").unwrap(),
            256
        );
        assert_eq!(numeric(&[0xff; 8], "f").unwrap(), -1);
        assert!(numeric(b"12x\0", "f").is_err());
        assert!(numeric(&[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0], "f").is_err());
    }

    #[test]
    fn old_style_directory_is_a_directory_and_carries_no_data() {
        let a = archive(&[&header(b"d/", 0, 0), &header(b"d/f", b'0', 0)]);
        let h = all(&a).unwrap();
        assert_eq!(h[0].typeflag, flag::DIR);
        assert_eq!(h[1].typeflag, flag::REG);
    }

    #[test]
    fn header_only_types_skip_no_data() {
        // A directory whose size field says 512: Go reads the next header at once.
        let a = archive(&[&header(b"d/", b'5', 512), &header(b"f", b'0', 0)]);
        let h = all(&a).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].name, b"f");
    }

    #[test]
    fn gnu_magic_with_a_prefix_that_is_not_a_time() {
        let mut b = header(b"name", b'0', 0);
        b[257..263].copy_from_slice(b"ustar ");
        b[263..265].copy_from_slice(b" \0");
        b[345..348].copy_from_slice(b"dir");
        seal(&mut b);
        assert_eq!(all(&archive(&[&b])).unwrap()[0].name, b"dir/name");
        // A prefix that parses as octal times is a GNU atime: no prefix.
        b[345..348].copy_from_slice(b"017");
        seal(&mut b);
        assert_eq!(all(&archive(&[&b])).unwrap()[0].name, b"name");
    }

    #[test]
    fn pax_and_gnu_precedence() {
        let pax = rec(b"path", b"pax-name");
        let x = header(b"PaxHeader", b'x', pax.len() as u64);
        let long = b"gnu-long-name\0";
        let l = header(b"././@LongLink", b'L', long.len() as u64);
        let a = archive(&[&x, &data(&pax), &l, &data(long), &header(b"short", b'0', 0)]);
        assert_eq!(all(&a).unwrap()[0].name, b"gnu-long-name");
    }

    #[test]
    fn nul_in_an_xattr_key_is_refused() {
        let r = rec(b"SCHILY.xattr.user.x\0y", b"1");
        assert_eq!(
            r.len(),
            usize::from(r[0] - b'0') * 10 + usize::from(r[1] - b'0')
        );
        let a = archive(&[
            &header(b"PaxHeader", b'x', r.len() as u64),
            &data(&r),
            &header(b"f", b'0', 0),
        ]);
        assert!(matches!(all(&a), Err(TarError::Refused(_))));
    }

    #[test]
    fn zero_block_then_header_is_malformed() {
        let mut a = vec![0u8; BLOCK];
        a.extend_from_slice(&header(b"f", b'0', 0));
        assert!(matches!(all(&a), Err(TarError::Header(_))));
        // One zero block, then the end of input: a clean end.
        assert!(all(&[0u8; BLOCK]).unwrap().is_empty());
    }
}
