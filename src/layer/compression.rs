//! Layer compression: decided by media type, checked against magic bytes.

use std::io::{BufRead, Read};

use crate::image::Compression;

pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
pub const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// What the first bytes of a blob say it is.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A decompressing reader. Gzip uses the multi-member decoder: pigz and eStargz
/// write several members, and the single-member decoder silently stops after the first.
pub fn decoder<'a, R: BufRead + 'a>(r: R, c: Compression) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}
