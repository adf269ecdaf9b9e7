//! Content digests (`sha256:<hex>`) and readers/writers that hash bytes as they pass.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, to_io};

/// A `sha256:` content digest. Other algorithms are rejected when parsed, because
/// coldpress must verify every blob it reads and only implements sha256.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn from_sha256(bytes: &[u8]) -> Self {
        Digest {
            hex: hex::encode(bytes),
        }
    }

    pub fn of(data: &[u8]) -> Self {
        Self::from_sha256(&Sha256::digest(data))
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// First 12 hex characters, for tables.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}' is not a digest (expected sha256:<64 hex>)"))?;
        if alg != "sha256" {
            return Err(format!(
                "digest algorithm '{alg}' is not supported (only sha256)"
            ));
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("'{s}' is not a valid sha256 digest"));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest::from_sha256(&self.inner.finalize())
    }
}

/// A reader that hashes everything read through it and, at EOF, checks the
/// result against an expected digest and size. The mismatch surfaces as an
/// `io::Error` wrapping [`Error::DigestMismatch`], so it cannot be missed by
/// whatever is reading (tar, gzip) and is recovered with `error::from_io`.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Option<(Digest, Option<u64>)>,
    what: String,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Option<(Digest, Option<u64>)>, what: impl Into<String>) -> Self {
        VerifyingReader {
            inner,
            hasher: Hasher::new(),
            expected,
            what: what.into(),
            done: false,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.hasher.len()
    }

    /// Digest of what has been read so far (complete only after EOF).
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn check(&mut self) -> io::Result<()> {
        self.done = true;
        let Some((expected, size)) = &self.expected else {
            return Ok(());
        };
        let actual = self.hasher.clone().finish();
        if &actual != expected {
            return Err(to_io(Error::DigestMismatch {
                what: self.what.clone(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            }));
        }
        if let Some(size) = size
            && *size != self.hasher.len()
        {
            return Err(to_io(Error::invalid(
                &self.what,
                format!(
                    "size mismatch: descriptor says {size} bytes, read {}",
                    self.hasher.len()
                ),
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if !self.done {
                self.check()?;
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        // A blob longer than its descriptor is as wrong as a short one; stop early
        // instead of reading an unbounded stream.
        if let Some((_, Some(size))) = &self.expected
            && self.hasher.len() > *size
        {
            return Err(to_io(Error::invalid(
                &self.what,
                format!("size mismatch: descriptor says {size} bytes, blob is longer"),
            )));
        }
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hash a reader to EOF.
pub fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let len = h.len();
    Ok((h.finish(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::of(b""));
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!("nocolon".parse::<Digest>().is_err());
    }

    #[test]
    fn verifying_reader_reports_mismatch_at_eof() {
        let expected = Digest::of(b"hello");
        let mut r = VerifyingReader::new(&b"hellO"[..], Some((expected, Some(5))), "blob x");
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        let typed = crate::error::from_io("reading", err);
        assert!(matches!(typed, Error::DigestMismatch { .. }), "{typed}");
    }

    #[test]
    fn verifying_reader_rejects_long_blob() {
        let expected = Digest::of(b"hel");
        let mut r = VerifyingReader::new(&b"hello"[..], Some((expected, Some(3))), "blob x");
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
