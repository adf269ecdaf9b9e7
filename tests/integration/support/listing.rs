//! Comparing `coldpress analyze --list-files` with an unpacked tree.

use std::collections::BTreeMap;

use serde_json::Value;

use super::FsEntry;

pub fn files(report: &Value) -> BTreeMap<String, Value> {
    report["files"]
        .as_array()
        .expect("--list-files gives files")
        .iter()
        .map(|f| {
            (
                f["path"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_string(),
                f.clone(),
            )
        })
        // The root itself is not part of a walked tree.
        .filter(|(p, _)| !p.is_empty())
        .collect()
}

/// Compare our listing with the unpacked tree; returns every difference.
pub fn differences(
    ours: &BTreeMap<String, Value>,
    theirs: &BTreeMap<String, FsEntry>,
) -> Vec<String> {
    let mut out = Vec::new();
    for p in theirs.keys().filter(|p| !ours.contains_key(*p)) {
        out.push(format!("{p}: only in umoci's tree"));
    }
    for p in ours.keys().filter(|p| !theirs.contains_key(*p)) {
        out.push(format!("{p}: only in coldpress's listing"));
    }
    for (p, t) in theirs {
        let Some(o) = ours.get(p) else { continue };
        let mut check = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{p}: {what}: coldpress {a} vs umoci {b}"));
            }
        };
        check("type", o["type"].as_str().unwrap().into(), t.ftype.into());
        // Linux cannot store a symlink's mode (lchmod does not exist; every symlink
        // reads 0777), so a tar header's symlink mode is not visible after unpacking.
        if t.ftype != "symlink" {
            check(
                "mode",
                o["mode"].as_str().unwrap().into(),
                format!("{:04o}", t.mode),
            );
        }
        check("uid", o["uid"].to_string(), t.uid.to_string());
        check("gid", o["gid"].to_string(), t.gid.to_string());
        if t.ftype == "file" {
            check("size", o["size"].to_string(), t.size.to_string());
        }
        check(
            "link",
            o["link"].as_str().unwrap_or("").into(),
            t.link.clone().unwrap_or_default(),
        );
        // Directories umoci had to invent (no tar entry) get the time of the unpack.
        let implicit = p == "implicit" || p == "implicit/dir";
        if !implicit {
            let m = if t.mtime.1 == 0 {
                t.mtime.0.to_string()
            } else {
                format!("{}.{:09}", t.mtime.0, t.mtime.1)
            };
            check("mtime", o["mtime"].as_str().unwrap().into(), m);
        }
        if t.ftype == "char" || t.ftype == "block" {
            let (maj, min) = (
                (t.rdev >> 8) & 0xfff,
                (t.rdev & 0xff) | ((t.rdev >> 12) & 0xfff00),
            );
            check(
                "device",
                o["device"].as_str().unwrap_or("").into(),
                format!("{maj},{min}"),
            );
        }
        let ours_x: Vec<(String, Vec<u8>)> = o["xattrs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        check("xattrs", format!("{ours_x:?}"), format!("{:?}", t.xattrs));
    }
    out
}

/// Everything but the layer column must agree between transports and encodings.
pub fn comparable(files: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    files
        .iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("layer");
            (k.clone(), v)
        })
        .collect()
}
