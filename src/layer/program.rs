//! What the loader or the kernel needs to run a file: an ELF file's `DT_NEEDED`,
//! `DT_RPATH` and `DT_RUNPATH`, a script's `#!` line. The layer reader notes
//! these while it spools a layer, so a listing taken from the cache still tells
//! which OS packages the function loads (the `build-packages` rule).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use object::read::elf::{Dyn, FileHeader};
use object::{Endianness, FileKind, ReadCache, ReadRef, elf};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dynamic {
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// What running a file makes the loader or kernel open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    /// A dynamically linked ELF executable or library.
    Elf(Dynamic),
    /// A script: its `#!` line without the `#!`, trimmed.
    Script(Box<str>),
}

pub const ELF_MAGIC: &[u8] = b"\x7fELF";
/// Bytes of a file's start kept to recognise it (a `#!` line longer than this
/// is cut; Linux itself reads at most 256 bytes of it).
pub const HEAD: usize = 256;

/// What the first bytes of a file say: a script's interpreter line, an ELF file
/// whose dynamic section must still be read (`Some(None)`), or nothing.
pub fn from_head(head: &[u8]) -> Option<Option<Program>> {
    if head.starts_with(ELF_MAGIC) {
        return Some(None);
    }
    let line = head.strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line);
    let line = line.lines().next().unwrap_or("").trim();
    Some(Some(Program::Script(line.into())))
}

/// The dynamic entries of an ELF file; `None` when it is not ELF or has none
/// (static executables, object files). Only the headers and the dynamic
/// section are read, through a read cache, never the whole file.
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

/// A file's bytes inside a spooled layer, readable and seekable on their own.
pub struct SpoolSlice<'a> {
    file: &'a File,
    start: u64,
    pub len: u64,
    pos: u64,
}

impl<'a> SpoolSlice<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        SpoolSlice {
            file,
            start,
            len,
            pos: 0,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shebang_line_is_kept_trimmed_and_elf_waits_for_its_dynamic_section() {
        assert_eq!(
            from_head(b"#!/usr/bin/env python3 \nimport sys\n"),
            Some(Some(Program::Script("/usr/bin/env python3".into())))
        );
        assert_eq!(from_head(b"\x7fELF\x02\x01\x01"), Some(None));
        assert_eq!(from_head(b"import sys\n"), None);
        assert_eq!(from_head(b""), None);
    }

    #[test]
    fn the_test_binary_itself_needs_libc() {
        // A real dynamically linked ELF file: the running test executable.
        let exe = std::env::current_exe().unwrap();
        let f = File::open(&exe).unwrap();
        let len = f.metadata().unwrap().len();
        let d = dynamic(SpoolSlice::new(&f, 0, len)).expect("a dynamic executable");
        assert!(
            d.needed.iter().any(|n| n.starts_with("libc.so")),
            "{:?}",
            d.needed
        );
    }
}
