//! What an executable or shared library needs the loader to find: `DT_NEEDED`,
//! `DT_RPATH` and `DT_RUNPATH`, read with the `object` crate through a read
//! cache over the spooled layer (only the headers and the dynamic section are
//! read, not the file).

use std::io::{Read, Seek};

use object::read::elf::{Dyn, FileHeader};
use object::{Endianness, FileKind, ReadCache, ReadRef, elf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

pub const MAGIC: &[u8] = b"\x7fELF";

/// The dynamic entries of an ELF file; `None` when it is not ELF or has none
/// (static executables, object files).
pub fn dynamic<R: Read + Seek>(file: R) -> Option<Dynamic> {
    let cache = ReadCache::new(file);
    let data = &cache;
    match FileKind::parse(data).ok()? {
        FileKind::Elf64 => parse::<elf::FileHeader64<Endianness>, _>(data),
        FileKind::Elf32 => parse::<elf::FileHeader32<Endianness>, _>(data),
        _ => None,
    }
}

fn parse<'data, H: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(data: R) -> Option<Dynamic> {
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let (entries, strtab) = sections.dynamic(endian, data).ok()??;
    let strings = sections.strings(endian, data, strtab).ok()?;
    let mut out = Dynamic::default();
    let split = |s: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(s)
            .split(':')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect()
    };
    for d in entries {
        let tag = d.tag(endian);
        if tag == elf::DT_NULL {
            break;
        }
        if !matches!(tag, elf::DT_NEEDED | elf::DT_RPATH | elf::DT_RUNPATH) {
            continue;
        }
        let Ok(s) = d.string(endian, strings) else {
            continue;
        };
        match tag {
            elf::DT_NEEDED => out.needed.push(String::from_utf8_lossy(s).into_owned()),
            elf::DT_RPATH => out.rpath.extend(split(s)),
            _ => out.runpath.extend(split(s)),
        }
    }
    Some(out)
}
