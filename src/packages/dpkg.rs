//! dpkg's database: `/var/lib/dpkg/status` (one RFC 822-style stanza per
//! package), `info/<pkg>[:<arch>].list` (the files each package owns) and apt's
//! `/var/lib/apt/extended_states` (which packages apt installed only as
//! dependencies). Editing drops whole stanzas and keeps every other byte.

use std::collections::{HashMap, HashSet};

use super::content::ContentReader;
use super::{Manager, Package, PackageDb};
use crate::error::Result;
use crate::fsindex::FsIndex;
use crate::layer::entry::{basename, parent};

pub const STATUS: &str = "var/lib/dpkg/status";
pub const INFO: &str = "var/lib/dpkg/info";
pub const EXTENDED_STATES: &str = "var/lib/apt/extended_states";
/// Largest database file read (real status files are a few MiB).
const DB_LIMIT: u64 = 256 << 20;

/// Small database files the layer reader keeps the content of.
pub fn wants_content(path: &str) -> bool {
    path == STATUS || path == EXTENDED_STATES || (parent(path) == INFO && path.ends_with(".list"))
}

/// One stanza: its fields (continuation lines joined) and its byte range.
pub struct Stanza<'a> {
    pub fields: Vec<(&'a str, String)>,
    pub range: std::ops::Range<usize>,
}

impl Stanza<'_> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Split a deb822 text into stanzas; each range ends after the stanza's blank
/// line(s), so removing ranges keeps the rest byte for byte.
pub fn stanzas(text: &str) -> Vec<Stanza<'_>> {
    let mut out = Vec::new();
    let mut fields: Vec<(&str, String)> = Vec::new();
    let mut start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let at = pos;
        pos += line.len();
        let l = line.trim_end_matches(['\n', '\r']);
        if l.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push(Stanza {
                    fields: std::mem::take(&mut fields),
                    range: s..pos,
                });
            } else if let Some(last) = out.last_mut() {
                // Extra blank lines belong to the stanza before them.
                last.range.end = pos;
            }
            continue;
        }
        if start.is_none() {
            start = Some(at);
        }
        if l.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(l.trim());
            }
        } else if let Some((k, v)) = l.split_once(':') {
            fields.push((k.trim(), v.trim().to_string()));
        }
    }
    if let Some(s) = start {
        out.push(Stanza {
            fields,
            range: s..pos,
        });
    }
    out
}

/// `a (>= 1) | b:any, c` → [[a, b], [c]] (names only: every installed version
/// satisfies a dependency as far as keeping a package goes).
pub fn parse_relations(v: &str) -> Vec<Vec<String>> {
    v.split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.trim().split([' ', '(', '[', '<']).next()?.trim();
                    let name = name.split(':').next().unwrap_or(name);
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// A path as a package lists it (`/lib/x86_64-linux-gnu/libc.so.6`), as the
/// index names it: parents resolved through symlinks, the last part kept.
pub fn index_path(index: &FsIndex, listed: &str) -> Option<String> {
    let rel = listed.trim_start_matches('/').trim_end_matches('/');
    if rel.is_empty() || rel == "." {
        return None;
    }
    if index.get(rel).is_some() {
        return Some(rel.to_string());
    }
    let dir = parent(rel);
    let real_dir = if dir.is_empty() {
        String::new()
    } else {
        index.resolve(dir)?
    };
    let p = if real_dir.is_empty() {
        basename(rel).to_string()
    } else {
        format!("{real_dir}/{}", basename(rel))
    };
    index.get(&p).map(|_| p)
}

/// Read the dpkg database of `index`, if it has one. `base` is the matched
/// base's filesystem: a package whose file list it holds was there before.
pub fn read(reader: &ContentReader<'_>, base: &FsIndex) -> Result<Option<PackageDb>> {
    let index = reader.index;
    if index.get(STATUS).is_none() {
        return Ok(None);
    }
    // Unreadable: a base layer's file that was not captured (nothing added).
    let Some(status_text) = reader.read_text(STATUS, DB_LIMIT)? else {
        return Ok(None);
    };
    let auto = match reader.read(EXTENDED_STATES, DB_LIMIT)? {
        Some(raw) => {
            let text = String::from_utf8_lossy(&raw).into_owned();
            Some((EXTENDED_STATES.to_string(), text))
        }
        None => None,
    };
    let mut auto_names: HashSet<(String, String)> = HashSet::new();
    if let Some((_, text)) = &auto {
        for s in stanzas(text) {
            if s.get("Auto-Installed") == Some("1")
                && let Some(name) = s.get("Package")
            {
                auto_names.insert((name.to_string(), s.get("Architecture").unwrap_or("").into()));
            }
        }
    }
    // info/ files by package: `foo.list`, `foo:amd64.postinst`…
    let mut info: HashMap<String, Vec<String>> = HashMap::new();
    for (path, n) in index.descendants(INFO) {
        if n.is_dir() || parent(path) != INFO {
            continue;
        }
        let name = basename(path);
        if let Some((pkg, _ext)) = name.rsplit_once('.') {
            info.entry(pkg.to_string())
                .or_default()
                .push(path.to_string());
        }
    }

    let mut packages = Vec::new();
    for s in stanzas(&status_text) {
        let Some(name) = s.get("Package") else {
            continue;
        };
        let status = s.get("Status").unwrap_or("");
        // Only what is unpacked on disk; `deinstall ok config-files` leaves conffiles only.
        let installed = status.ends_with(" installed")
            || status.ends_with(" half-configured")
            || status.ends_with(" unpacked");
        if !installed {
            continue;
        }
        let arch = s.get("Architecture").unwrap_or("").to_string();
        let mut rel = Vec::new();
        for key in ["Pre-Depends", "Depends", "Recommends"] {
            if let Some(v) = s.get(key) {
                rel.extend(parse_relations(v));
            }
        }
        let provides = s
            .get("Provides")
            .map(|v| parse_relations(v).into_iter().flatten().collect())
            .unwrap_or_default();
        let qualified = format!("{name}:{arch}");
        let key = if info.contains_key(&qualified) {
            qualified
        } else {
            name.to_string()
        };
        let list = format!("{INFO}/{key}.list");
        let mut files = Vec::new();
        if let Some(raw) = reader.read(&list, DB_LIMIT)? {
            for line in String::from_utf8_lossy(&raw).lines() {
                if let Some(p) = index_path(index, line) {
                    files.push(p);
                }
            }
        }
        let in_base = base.get(&list).is_some();
        // apt records `Architecture: all` packages under the native architecture.
        let manual = !auto_names
            .iter()
            .any(|(n, a)| n == name && (a == &arch || a.is_empty() || arch == "all"));
        packages.push(Package {
            name: name.to_string(),
            version: s.get("Version").unwrap_or("").to_string(),
            arch,
            files,
            depends: rel,
            provides,
            manual,
            in_base,
            db_files: info.get(&key).cloned().unwrap_or_default(),
            row: 0,
        });
    }
    Ok(Some(PackageDb {
        manager: Manager::Dpkg,
        packages,
        status_path: STATUS.to_string(),
        status_text,
        extended_states: auto,
    }))
}

/// `text` without the stanzas whose `Package` (and `Architecture`, when the
/// stanza has one) is in `removed`.
pub fn without_packages(text: &str, removed: &HashSet<(String, String)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in stanzas(text) {
        let name = s.get("Package").unwrap_or("");
        let arch = s.get("Architecture").unwrap_or("");
        let gone = removed.contains(&(name.to_string(), arch.to_string()))
            || (arch.is_empty() && removed.iter().any(|(n, _)| n == name));
        if gone {
            out.push_str(&text[at..s.range.start]);
            at = s.range.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TEXT: &str = "Package: make\nStatus: install ok installed\nVersion: 4.3-4.1\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\nDescription: utility\n multi-line\n\nPackage: perl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.36.0-7\nPre-Depends: perl-base (= 5.36.0-7)\nDepends: perl-modules-5.36 (>= 5.36.0-7), libperl5.36 (= 5.36.0-7) | foo:any\nRecommends: netbase\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1\n";

    #[test]
    fn stanzas_cover_the_text_and_join_continuations() {
        let s = stanzas(STATUS_TEXT);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].get("Description"), Some("utility\nmulti-line"));
        assert_eq!(s[1].range.start, s[0].range.end);
        assert_eq!(s[2].range.end, STATUS_TEXT.len());
    }

    #[test]
    fn relations_keep_alternatives_and_drop_versions() {
        let s = stanzas(STATUS_TEXT);
        assert_eq!(
            parse_relations(s[1].get("Depends").unwrap()),
            vec![
                vec!["perl-modules-5.36".to_string()],
                vec!["libperl5.36".to_string(), "foo".to_string()]
            ]
        );
    }

    #[test]
    fn removing_a_stanza_keeps_every_other_byte() {
        let mut gone = HashSet::new();
        gone.insert(("perl".to_string(), "amd64".to_string()));
        let out = without_packages(STATUS_TEXT, &gone);
        assert!(!out.contains("Package: perl"));
        assert!(out.starts_with("Package: make\n"));
        assert!(out.contains("\n\nPackage: old\n"));
        assert_eq!(
            out.len(),
            STATUS_TEXT.len() - stanzas(STATUS_TEXT)[1].range.len()
        );
    }
}
