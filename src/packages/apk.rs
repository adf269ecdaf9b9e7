//! Alpine's apk database: `/lib/apk/db/installed` (one block per package:
//! `P:` name, `V:` version, `A:` arch, `D:` dependencies, `p:` provides, `F:`
//! a directory followed by its `R:` files) and `/etc/apk/world` (what was
//! asked for by name). Editing drops whole blocks and world lines.

use std::collections::HashSet;

use super::content::ContentReader;
use super::dpkg::index_path;
use super::{Manager, Package, PackageDb};
use crate::error::Result;
use crate::fsindex::FsIndex;

pub const INSTALLED: &str = "lib/apk/db/installed";
pub const WORLD: &str = "etc/apk/world";
const DB_LIMIT: u64 = 256 << 20;

pub fn wants_content(path: &str) -> bool {
    path == INSTALLED || path == WORLD
}

/// `so:libc.musl-x86_64.so.1=1` → `so:libc.musl-x86_64.so.1`; `foo>=1.2` → `foo`.
fn bare(dep: &str) -> &str {
    let end = dep.find(['<', '>', '=', '~']).unwrap_or(dep.len());
    dep[..end].trim()
}

/// One package block: its `K:value` fields in order, and its byte range
/// (blank line included).
type Block<'a> = (Vec<(char, &'a str)>, std::ops::Range<usize>);

fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let at = pos;
        pos += line.len();
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            if let Some(s) = start.take() {
                out.push((std::mem::take(&mut fields), s..pos));
            }
            continue;
        }
        start.get_or_insert(at);
        let mut chars = l.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            fields.push((k, &l[2..]));
        }
    }
    if let Some(s) = start {
        out.push((fields, s..pos));
    }
    out
}

fn names(text: &str) -> HashSet<String> {
    blocks(text)
        .into_iter()
        .filter_map(|(f, _)| {
            f.iter()
                .find(|(k, _)| *k == 'P')
                .map(|(_, v)| v.to_string())
        })
        .collect()
}

pub fn read(reader: &ContentReader<'_>, base: &FsIndex) -> Result<Option<PackageDb>> {
    let index = reader.index;
    if index.get(INSTALLED).is_none() {
        return Ok(None);
    }
    let Some(text) = reader.read_text(INSTALLED, DB_LIMIT)? else {
        return Ok(None);
    };
    let base_names = base
        .get(INSTALLED)
        .and_then(|n| base.captured_text(n))
        .map(names)
        .unwrap_or_default();
    let world = reader
        .read(WORLD, DB_LIMIT)?
        .map(|w| String::from_utf8_lossy(&w).into_owned());
    let asked: HashSet<String> = world
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(|w| bare(w.split('@').next().unwrap_or(w)).to_string())
        .collect();
    let mut packages = Vec::new();
    for (fields, _) in blocks(&text) {
        let mut p = Package::default();
        let mut dir = String::new();
        for (k, v) in fields {
            match k {
                'P' => p.name = v.to_string(),
                'V' => p.version = v.to_string(),
                'A' => p.arch = v.to_string(),
                'D' => p.depends.extend(
                    v.split_whitespace()
                        .filter(|d| !d.starts_with('!'))
                        .map(|d| vec![bare(d).to_string()]),
                ),
                'p' => p
                    .provides
                    .extend(v.split_whitespace().map(|d| bare(d).to_string())),
                'F' => {
                    dir = v.to_string();
                    if let Some(x) = index_path(index, &dir) {
                        p.files.push(x);
                    }
                }
                'R' => {
                    if let Some(x) = index_path(index, &format!("{dir}/{v}")) {
                        p.files.push(x);
                    }
                }
                _ => {}
            }
        }
        if p.name.is_empty() {
            continue;
        }
        // The base's database when its content was kept; otherwise a package
        // the base filesystem already has files of.
        p.in_base = base_names.contains(&p.name)
            || p.files
                .iter()
                .any(|f| base.get(f).is_some_and(|n| !n.is_dir()));
        // Without a world file every package counts as asked for.
        p.manual = world.is_none() || asked.contains(&p.name);
        packages.push(p);
    }
    Ok(Some(PackageDb {
        manager: Manager::Apk,
        packages,
        status_path: INSTALLED.to_string(),
        status_text: text,
        extended_states: world.map(|w| (WORLD.to_string(), w)),
    }))
}

/// `installed` without the blocks of `removed` packages.
pub fn without_packages(text: &str, removed: &HashSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (fields, range) in blocks(text) {
        let name = fields.iter().find(|(k, _)| *k == 'P').map(|(_, v)| *v);
        if name.is_some_and(|n| removed.contains(n)) {
            out.push_str(&text[at..range.start]);
            at = range.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

/// `world` without the names of `removed` packages.
pub fn world_without(text: &str, removed: &HashSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = bare(line.split('@').next().unwrap_or(line));
        if !removed.contains(name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "C:Q1a\nP:musl\nV:1.2.4-r2\nA:x86_64\np:so:libc.musl-x86_64.so.1=1\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\nC:Q1b\nP:gcc\nV:13.2.1-r0\nA:x86_64\nD:binutils>=2.41 so:libc.musl-x86_64.so.1 !gcc-doc\nF:usr/bin\nR:gcc\n\n";

    #[test]
    fn blocks_names_and_edits() {
        assert_eq!(names(DB), ["musl".to_string(), "gcc".to_string()].into());
        let b = blocks(DB);
        assert_eq!(b[1].1.end, DB.len());
        let mut gone = HashSet::new();
        gone.insert("gcc".to_string());
        assert_eq!(without_packages(DB, &gone), DB[..b[1].1.start]);
        assert_eq!(world_without("gcc\nmusl\n", &gone), "musl\n");
        assert_eq!(
            bare("so:libc.musl-x86_64.so.1=1"),
            "so:libc.musl-x86_64.so.1"
        );
        assert_eq!(bare("binutils>=2.41"), "binutils");
    }
}
