//! rpm's database as Amazon Linux 2023 (the current AWS Lambda bases) keeps
//! it: `/var/lib/rpm/rpmdb.sqlite`, one header blob per package in the
//! `Packages` table, read with rusqlite from a temporary copy (sqlite needs a
//! file). dnf's `/var/lib/dnf/history.sqlite` says which packages a user asked
//! for. Removing a package deletes its row (and its rows in the index tables,
//! which rpm rebuilds from the headers anyway: `rpm --rebuilddb`).
//!
//! Amazon Linux 2 keeps the older Berkeley DB database instead: the same
//! header blobs, keyed by header number, in the hash database
//! `/var/lib/rpm/Packages` (read by [`super::bdb`]), plus index databases
//! (Name, Basenames, Providename…) that point into it by header number.
//! coldpress reads it but does not rewrite it, so no package is removed from
//! an image that has one (see [`BDB_READ_ONLY`] and docs/decisions.md).

use std::collections::{HashMap, HashSet};
use std::io::Write;

use super::content::{Bytes, ContentReader};
use super::dpkg::index_path;
use super::{Manager, Package, PackageDb};
use crate::error::{Error, IoContext, Result};
use crate::fsindex::FsIndex;

pub const RPMDB: &str = "var/lib/rpm/rpmdb.sqlite";
pub const DNF_HISTORY: &str = "var/lib/dnf/history.sqlite";
/// The Berkeley DB database of Amazon Linux 2 (and rpm before 4.16).
pub const PACKAGES_BDB: &str = "var/lib/rpm/Packages";
/// Why packages stay when the database is Berkeley DB: removing their files
/// while the database still lists them would make scanners and rpm report
/// software that is not there, which is worse than a larger image.
pub const BDB_READ_ONLY: &str =
    "the rpm database is Berkeley DB, which coldpress reads but does not rewrite";

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_PROVIDENAME: u32 = 1047;
const TAG_REQUIRENAME: u32 = 1049;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;

pub fn wants_content(path: &str) -> bool {
    path == RPMDB || path == PACKAGES_BDB
}

/// The tags of one rpm header blob (`il`, `dl`, index entries, data store).
#[derive(Default, Debug)]
pub struct Header {
    pub strings: HashMap<u32, Vec<String>>,
    pub ints: HashMap<u32, Vec<u32>>,
}

impl Header {
    pub fn parse(blob: &[u8]) -> Option<Header> {
        let be = |b: &[u8], at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let il = be(blob, 0)? as usize;
        let dl = be(blob, 4)? as usize;
        let data_start = 8usize.checked_add(il.checked_mul(16)?)?;
        let data = blob.get(data_start..data_start.checked_add(dl)?)?;
        let mut h = Header::default();
        for i in 0..il {
            let e = 8 + i * 16;
            let (tag, ty, off, count) = (
                be(blob, e)?,
                be(blob, e + 4)?,
                be(blob, e + 8)? as usize,
                be(blob, e + 12)? as usize,
            );
            match ty {
                // STRING, STRING_ARRAY, I18NSTRING: NUL-terminated strings.
                6 | 8 | 9 => {
                    let n = if ty == 6 { 1 } else { count };
                    let mut at = off;
                    let mut v = Vec::with_capacity(n.min(1 << 16));
                    for _ in 0..n {
                        let rest = data.get(at..)?;
                        let end = rest.iter().position(|&b| b == 0)?;
                        v.push(String::from_utf8_lossy(&rest[..end]).into_owned());
                        at += end + 1;
                    }
                    h.strings.insert(tag, v);
                }
                // INT32
                4 => {
                    let mut v = Vec::with_capacity(count.min(1 << 20));
                    for k in 0..count {
                        v.push(be(data, off + k * 4)?);
                    }
                    h.ints.insert(tag, v);
                }
                _ => {}
            }
        }
        Some(h)
    }

    /// The package name.
    pub fn name(&self) -> String {
        self.one(TAG_NAME)
    }

    /// `[epoch:]version-release`, as rpm's `%{EVR}` prints it.
    pub fn evr(&self) -> String {
        match self.ints.get(&TAG_EPOCH).and_then(|e| e.first()) {
            Some(e) => format!("{e}:{}-{}", self.one(TAG_VERSION), self.one(TAG_RELEASE)),
            None => format!("{}-{}", self.one(TAG_VERSION), self.one(TAG_RELEASE)),
        }
    }

    fn one(&self, tag: u32) -> String {
        self.strings
            .get(&tag)
            .and_then(|v| v.first().cloned())
            .unwrap_or_default()
    }

    fn list(&self, tag: u32) -> &[String] {
        self.strings.get(&tag).map_or(&[], Vec::as_slice)
    }

    /// Absolute paths of the files the package owns.
    pub fn files(&self) -> Vec<String> {
        let (base, dirs) = (self.list(TAG_BASENAMES), self.list(TAG_DIRNAMES));
        let idx = self
            .ints
            .get(&TAG_DIRINDEXES)
            .map_or(&[][..], Vec::as_slice);
        base.iter()
            .zip(idx)
            .filter_map(|(b, &d)| dirs.get(d as usize).map(|d| format!("{d}{b}")))
            .collect()
    }
}

/// A copy of a database file (and its write-ahead log) that sqlite can open.
fn copy_out(
    reader: &ContentReader<'_>,
    path: &str,
    dir: &std::path::Path,
) -> Result<Option<std::path::PathBuf>> {
    let name = crate::layer::entry::basename(path);
    let mut copied = None;
    for (from, to) in [
        (path.to_string(), dir.join(name)),
        (format!("{path}-wal"), dir.join(format!("{name}-wal"))),
    ] {
        let Some(bytes) = reader.open(&from) else {
            continue;
        };
        let mut f = std::fs::File::create(&to).with_ctx(|| format!("copying /{from}"))?;
        match bytes {
            Bytes::Captured(b) => f.write_all(b).with_ctx(|| format!("copying /{from}"))?,
            Bytes::Spool(mut s) => {
                std::io::copy(&mut s, &mut f).with_ctx(|| format!("copying /{from}"))?;
            }
        }
        if from == path {
            copied = Some(to);
        }
    }
    Ok(copied)
}

fn sql_err(path: &str, e: rusqlite::Error) -> Error {
    Error::invalid(format!("/{path}"), format!("sqlite: {e}"))
}

/// Package names dnf records as installed by a user (reason 2), by the last
/// transaction that touched each.
fn user_installed(db: &std::path::Path) -> Result<HashSet<String>> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sql_err(DNF_HISTORY, e))?;
    let mut st = c
        .prepare("SELECT r.name, ti.reason FROM trans_item ti JOIN rpm r ON ti.item_id = r.item_id ORDER BY ti.id")
        .map_err(|e| sql_err(DNF_HISTORY, e))?;
    let mut last: HashMap<String, i64> = HashMap::new();
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(|e| sql_err(DNF_HISTORY, e))?;
    for row in rows {
        let (name, reason) = row.map_err(|e| sql_err(DNF_HISTORY, e))?;
        last.insert(name, reason);
    }
    Ok(last
        .into_iter()
        .filter(|(_, r)| *r == 2)
        .map(|(n, _)| n)
        .collect())
}

/// Every header blob of an rpmdb.sqlite, with its row number.
fn headers(db: &std::path::Path) -> Result<Vec<(i64, Header)>> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sql_err(RPMDB, e))?;
    let mut st = c
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(|e| sql_err(RPMDB, e))?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(|e| sql_err(RPMDB, e))?;
    let mut out = Vec::new();
    for row in rows {
        let (n, blob) = row.map_err(|e| sql_err(RPMDB, e))?;
        let h = Header::parse(&blob).ok_or_else(|| {
            Error::invalid(format!("/{RPMDB}"), format!("header {n} is malformed"))
        })?;
        out.push((n, h));
    }
    Ok(out)
}

/// Every header of a Berkeley DB `Packages` database, with its number, read
/// page by page from the layer. Key 0 is rpm's counter of header numbers, not
/// a package.
pub fn bdb_headers<R: std::io::Read + std::io::Seek>(src: R) -> Result<Vec<(i64, Header)>> {
    let what = format!("/{PACKAGES_BDB}");
    let mut db = super::bdb::HashDb::open(src, &what)?;
    let big_endian = db.big_endian();
    let mut out = Vec::new();
    db.for_each(|key, blob| {
        // rpm writes the key in the database's byte order.
        let key: [u8; 4] = key.try_into().map_err(|_| {
            Error::invalid(
                &what,
                format!("a key of {} bytes, not a header number", key.len()),
            )
        })?;
        let n = if big_endian {
            u32::from_be_bytes(key)
        } else {
            u32::from_le_bytes(key)
        };
        if n == 0 {
            return Ok(());
        }
        let h = Header::parse(&blob)
            .ok_or_else(|| Error::invalid(&what, format!("header {n} is malformed")))?;
        out.push((i64::from(n), h));
        Ok(())
    })?;
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// The rpm database of `index`, if it has one.
pub fn read(reader: &ContentReader<'_>, base: &FsIndex) -> Result<Option<PackageDb>> {
    let index = reader.index;
    if index.get(RPMDB).is_none() && index.get(PACKAGES_BDB).is_none() {
        return Ok(None);
    }
    let tmp = tempfile::tempdir().ctx("creating a directory for the rpm database")?;
    let (hdrs, status_path) = if index.get(RPMDB).is_some() {
        let Some(db) = copy_out(reader, RPMDB, tmp.path())? else {
            return Ok(None);
        };
        (headers(&db)?, RPMDB)
    } else {
        let hdrs = match reader.open(PACKAGES_BDB) {
            None => return Ok(None),
            Some(Bytes::Captured(b)) => bdb_headers(std::io::Cursor::new(b))?,
            Some(Bytes::Spool(s)) => bdb_headers(s)?,
        };
        (hdrs, PACKAGES_BDB)
    };
    let user = match copy_out(reader, DNF_HISTORY, tmp.path())? {
        Some(h) => Some(user_installed(&h)?),
        None => None,
    };
    let mut required_files: HashSet<&str> = HashSet::new();
    for (_, h) in &hdrs {
        for r in h.list(TAG_REQUIRENAME) {
            if r.starts_with('/') {
                required_files.insert(r);
            }
        }
    }
    let mut packages = Vec::new();
    for (n, h) in &hdrs {
        let name = h.name();
        if name.is_empty() || name == "gpg-pubkey" {
            continue;
        }
        let listed = h.files();
        let files: Vec<String> = listed.iter().filter_map(|f| index_path(index, f)).collect();
        // In the base when the base filesystem has one of its files (an
        // upgraded package replaced them in a later layer: still the base's).
        let in_base = files
            .iter()
            .any(|f| base.get(f).is_some_and(|n| !n.is_dir()));
        let mut provides: Vec<String> = h.list(TAG_PROVIDENAME).to_vec();
        provides.extend(
            listed
                .iter()
                .filter(|f| required_files.contains(f.as_str()))
                .cloned(),
        );
        let version = h.evr();
        packages.push(Package {
            manual: user.as_ref().is_none_or(|u| u.contains(&name)),
            name,
            version,
            arch: h.one(TAG_ARCH),
            files,
            depends: h
                .list(TAG_REQUIRENAME)
                .iter()
                .filter(|r| !r.starts_with("rpmlib("))
                .map(|r| vec![r.clone()])
                .collect(),
            provides,
            in_base,
            db_files: Vec::new(),
            row: *n,
        });
    }
    Ok(Some(PackageDb {
        manager: Manager::Rpm,
        packages,
        status_path: status_path.to_string(),
        status_text: String::new(),
        extended_states: None,
    }))
}

/// A copy of the image's rpmdb.sqlite without the rows of `removed`
/// (header numbers), checkpointed into one file.
pub fn without_packages(reader: &ContentReader<'_>, removed: &[i64]) -> Result<Vec<u8>> {
    let tmp = tempfile::tempdir().ctx("creating a directory for the rpm database")?;
    let db = copy_out(reader, RPMDB, tmp.path())?
        .ok_or_else(|| Error::invalid(format!("/{RPMDB}"), "its content could not be read"))?;
    {
        let c = rusqlite::Connection::open(&db).map_err(|e| sql_err(RPMDB, e))?;
        let tables: Vec<String> = {
            let mut st = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'Packages' AND name NOT LIKE 'sqlite_%'")
                .map_err(|e| sql_err(RPMDB, e))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| sql_err(RPMDB, e))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(|e| sql_err(RPMDB, e))?
        };
        for n in removed {
            // Index tables (Basenames, Name, Providename…) refer to the
            // header by hnum (a foreign key): they go first.
            for t in &tables {
                let sql = format!("DELETE FROM \"{t}\" WHERE hnum = ?1");
                c.execute(&sql, [n]).map_err(|e| sql_err(RPMDB, e))?;
            }
            c.execute("DELETE FROM Packages WHERE hnum = ?1", [n])
                .map_err(|e| sql_err(RPMDB, e))?;
        }
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE; VACUUM;")
            .map_err(|e| sql_err(RPMDB, e))?;
    }
    std::fs::read(&db).with_ctx(|| format!("reading the edited /{RPMDB}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header blob as rpm stores it: il, dl, entries, data.
    fn blob(entries: &[(u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut index = Vec::new();
        for (tag, ty, bytes, count) in entries {
            if *ty == 4 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            index.extend(tag.to_be_bytes());
            index.extend(ty.to_be_bytes());
            index.extend((data.len() as u32).to_be_bytes());
            index.extend(count.to_be_bytes());
            data.extend(bytes);
        }
        let mut out = Vec::new();
        out.extend((entries.len() as u32).to_be_bytes());
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    #[test]
    fn header_tags_and_file_paths() {
        let b = blob(&[
            (TAG_NAME, 6, b"zlib\0".to_vec(), 1),
            (TAG_BASENAMES, 8, b"libz.so.1\0zlib.h\0".to_vec(), 2),
            (TAG_DIRNAMES, 8, b"/usr/lib64/\0/usr/include/\0".to_vec(), 2),
            (
                TAG_DIRINDEXES,
                4,
                [0u32, 1].iter().flat_map(|x| x.to_be_bytes()).collect(),
                2,
            ),
        ]);
        let h = Header::parse(&b).unwrap();
        assert_eq!(h.one(TAG_NAME), "zlib");
        assert_eq!(h.files(), ["/usr/lib64/libz.so.1", "/usr/include/zlib.h"]);
        assert!(Header::parse(&b[..b.len() - 3]).is_none());
    }

    /// A Berkeley DB `Packages` written by db5.3_load from headers Debian's
    /// rpm installed (testdata/rpmdb/README.md), in both byte orders.
    #[test]
    fn berkeley_db_packages() {
        for file in [
            &include_bytes!("../../testdata/rpmdb/Packages-le")[..],
            &include_bytes!("../../testdata/rpmdb/Packages-be")[..],
        ] {
            let got: Vec<(i64, String, String, Vec<String>)> =
                bdb_headers(std::io::Cursor::new(file))
                    .unwrap()
                    .into_iter()
                    .map(|(n, h)| (n, h.name(), h.evr(), h.files()))
                    .collect();
            assert_eq!(
                got,
                [
                    (1, "foo".into(), "1.0-1".into(), vec!["/usr/bin/foo".into()]),
                    (
                        2,
                        "bar".into(),
                        "2:3.1-4".into(),
                        vec!["/usr/lib/bar/a".into(), "/usr/lib/bar/b".into()]
                    ),
                ]
            );
        }
    }
}
