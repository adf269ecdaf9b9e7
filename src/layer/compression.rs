//! Layer compression: decided by media type, checked against magic bytes
//! ([`crate::image::sniff_compression`]), undone here.

use std::io::{BufRead, Read};

use crate::image::Compression;

/// A decompressing reader. Gzip uses the multi-member decoder: pigz and eStargz
/// write several members, and the single-member decoder silently stops after the first.
pub fn decoder<'a, R: BufRead + 'a>(r: R, c: Compression) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}
