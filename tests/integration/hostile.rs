//! Hostile layers: each gets one clear error naming the cause, exit code 1, nothing
//! written outside coldpress's own temporary directories, and bounded memory.

use std::path::Path;

use tar::EntryType;

use crate::support;
use crate::support::{Env, header, raw_image, run_measured, set_raw_name};

fn tar_of(entries: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (h, data) in entries {
        b.append(h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn file(name: &[u8], data: &[u8]) -> (tar::Header, Vec<u8>) {
    let mut h = header(EntryType::Regular, data.len() as u64);
    set_raw_name(&mut h, name);
    (h, data.to_vec())
}

fn link(kind: EntryType, name: &[u8], target: &[u8]) -> (tar::Header, Vec<u8>) {
    let mut h = header(kind, 0);
    h.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target);
    set_raw_name(&mut h, name);
    (h, Vec::new())
}

/// A PAX or GNU long-name record of `size` bytes before a regular file.
fn extension(kind: EntryType, size: usize) -> Vec<(tar::Header, Vec<u8>)> {
    let mut data = vec![b'a'; size];
    if kind == EntryType::XHeader {
        // A syntactically valid record as long as asked: "<len> comment=aaa…\n".
        let rec = format!("{size:010} comment=");
        data[..rec.len()].copy_from_slice(rec.as_bytes());
        data[size - 1] = b'\n';
    }
    let mut h = header(kind, size as u64);
    set_raw_name(&mut h, b"././@LongLink");
    vec![(h, data), file(b"after", b"x")]
}

/// PAX records (raw values) for the regular file after them.
fn pax_records(records: &[(&str, &[u8])]) -> Vec<(tar::Header, Vec<u8>)> {
    let mut data = Vec::new();
    for (key, value) in records {
        // "<len> key=value\n", where len counts itself.
        let body_len = 1 + key.len() + 1 + value.len() + 1;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = header(EntryType::XHeader, data.len() as u64);
    set_raw_name(&mut h, b"././@PaxHeader");
    vec![(h, data), file(b"placeholder", b"x")]
}

/// What an escape would have touched: existence, size and mtime of each path.
fn snapshot(paths: &[&Path]) -> Vec<Option<(u64, i64)>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::symlink_metadata(p)
                .ok()
                .map(|m| (m.size(), m.mtime()))
        })
        .collect()
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                dirs.push(p);
            }
        }
    }
    out.sort();
    out
}

struct Case {
    name: &'static str,
    layers: Vec<Vec<u8>>,
    args: &'static [&'static str],
    expect: &'static str,
}

#[test]
fn hostile_layers_are_refused_with_a_clear_error() {
    // 64 MiB of zeros: a few tens of KiB compressed.
    let mut bomb = Vec::new();
    {
        let mut h = header(EntryType::Regular, 64 << 20);
        set_raw_name(&mut h, b"bomb");
        let mut b = tar::Builder::new(&mut bomb);
        b.append(&h, std::io::Read::take(std::io::repeat(0), 64 << 20))
            .unwrap();
        b.finish().unwrap();
    }
    let many: Vec<(tar::Header, Vec<u8>)> = (0..3000)
        .map(|i| file(format!("f{i}").as_bytes(), b""))
        .collect();
    // A GNU sparse file of one byte after an 8 GiB hole: tar readers fill holes
    // themselves, so reading it would write 8 GiB of zeros.
    let sparse = {
        let mut h = header(EntryType::GNUSparse, 1);
        let g = h.as_gnu_mut().unwrap();
        g.realsize.copy_from_slice(b"77777777777\0");
        g.sparse[0].offset.copy_from_slice(b"77777777776\0");
        g.sparse[0].numbytes.copy_from_slice(b"00000000001\0");
        set_raw_name(&mut h, b"holes");
        tar_of(&[(h, b"x".to_vec())])
    };
    let cases = vec![
        Case {
            name: "GNU sparse file (8 GiB hole)",
            layers: vec![sparse],
            args: &[],
            expect: "GNU sparse",
        },
        Case {
            name: "../ in a path",
            layers: vec![tar_of(&[file(b"../../etc/evil", b"x")])],
            args: &[],
            expect: "climbs out of the root",
        },
        Case {
            name: "absolute path",
            layers: vec![tar_of(&[file(b"/etc/passwd", b"x")])],
            args: &[],
            expect: "absolute path",
        },
        Case {
            name: "entry through a symlink",
            layers: vec![
                tar_of(&[link(EntryType::Symlink, b"etc", b"/tmp")]),
                tar_of(&[file(b"etc/passwd", b"x")]),
            ],
            args: &[],
            expect: "goes through the symlink",
        },
        Case {
            name: "hard link out of the image",
            layers: vec![tar_of(&[link(EntryType::Link, b"l", b"../../etc/shadow")])],
            args: &[],
            expect: "hard link",
        },
        Case {
            name: "hard link to a missing path",
            layers: vec![tar_of(&[link(EntryType::Link, b"l", b"not-there")])],
            args: &[],
            expect: "does not exist",
        },
        Case {
            name: "name not UTF-8",
            layers: vec![tar_of(&[file(b"caf\xe9", b"x")])],
            args: &[],
            expect: "not valid UTF-8",
        },
        Case {
            name: "PAX sparse file (GNU.sparse.* records)",
            layers: vec![tar_of(&pax_records(&[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", b"holes"),
                ("GNU.sparse.realsize", b"8589934592"),
            ]))],
            args: &[],
            expect: "PAX-format sparse file",
        },
        Case {
            name: "NUL in a PAX path",
            layers: vec![tar_of(&pax_records(&[("path", b"etc/pass\0wd")]))],
            args: &[],
            expect: "NUL",
        },
        Case {
            name: "huge PAX header",
            layers: vec![tar_of(&extension(EntryType::XHeader, 64 << 20))],
            args: &[],
            expect: "extension record",
        },
        Case {
            name: "huge GNU long name",
            layers: vec![tar_of(&extension(EntryType::GNULongName, 64 << 20))],
            args: &[],
            expect: "extension record",
        },
        Case {
            name: "decompression bomb (layer cap)",
            layers: vec![bomb.clone()],
            args: &["--max-layer-size", "10000000"],
            expect: "per-layer limit",
        },
        Case {
            name: "decompression bomb (image cap)",
            layers: vec![bomb.clone()],
            args: &["--max-image-size", "10000000"],
            expect: "limit",
        },
        Case {
            name: "too many entries",
            layers: vec![tar_of(&many)],
            args: &["--max-entries", "1000"],
            expect: "entries",
        },
    ];
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    // Run three levels deep in a sandbox with its own TMPDIR, so that the `../`
    // escapes would land inside the sandbox, where they can be seen.
    let sandbox = tempfile::tempdir().unwrap();
    let cwd = sandbox.path().join("a/b/c");
    let tmp = sandbox.path().join("tmp");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let targets = [
        Path::new("/etc/passwd"),
        Path::new("/etc/evil"),
        Path::new("/etc/shadow"),
        Path::new("/tmp/passwd"),
        Path::new("/etc/pass"),
    ];
    let before = snapshot(&targets);
    let mut peak_kib = 0;
    let mut table = String::from("| case | error |\n|---|---|\n");
    for (i, c) in cases.iter().enumerate() {
        let tag = format!("case{i}");
        raw_image(dir.path(), &tag, &c.layers);
        let reference = format!("oci:{}:{tag}", dir.path().display());
        for cmd in ["analyze", "optimize"] {
            let out_ref = format!("oci:{}:out{i}", dir.path().display());
            let mut args = vec![cmd, &reference];
            if cmd == "optimize" {
                args.push(&out_ref);
            }
            args.extend_from_slice(&["--offline", "-q"]);
            args.extend_from_slice(c.args);
            let (out, kib) =
                run_measured(env.cmd().current_dir(&cwd).env("TMPDIR", &tmp).args(&args));
            peak_kib = peak_kib.max(kib);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}: {cmd} should fail: {err}",
                c.name
            );
            let e = support::ErrorBlock::parse(&err);
            assert!(e.error.contains(c.expect), "{} ({cmd}): {e:?}", c.name,);
            assert!(!err.contains("panicked"));
            if cmd == "analyze" {
                table.push_str(&format!(
                    "| {} | `{}` |\n",
                    c.name,
                    format!("error: {}", e.error).replace(dir.path().to_str().unwrap(), "DIR")
                ));
            }
        }
    }
    // Nothing was written anywhere an entry pointed, in the sandbox (its temporary
    // directories cleaned up) or on the machine, and no tag was made.
    assert_eq!(tree(sandbox.path()), ["a", "a/b", "a/b/c", "tmp"]);
    assert_eq!(snapshot(&targets), before, "{targets:?} changed");
    // 64 MiB extension records and 64 MiB of zeros went by, none of it held:
    // memory stayed at coldpress's usual working set.
    assert!(
        peak_kib < 60 * 1024,
        "peak memory {peak_kib} KiB: something was buffered whole"
    );
    eprintln!("peak memory over all cases: {peak_kib} KiB");
    let index = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
    assert!(!index.contains("\"out"), "no output was tagged");
    eprintln!("{table}");
}

#[test]
fn devices_fifos_and_link_loops_are_data_not_actions() {
    let mut dev = header(EntryType::Char, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    set_raw_name(&mut dev, b"null");
    let mut fifo = header(EntryType::Fifo, 0);
    set_raw_name(&mut fifo, b"pipe");
    let layers = vec![tar_of(&[
        (dev, Vec::new()),
        (fifo, Vec::new()),
        link(EntryType::Symlink, b"a", b"b"),
        link(EntryType::Symlink, b"b", b"a"),
        link(EntryType::Symlink, b"up", b"../../../../etc/passwd"),
    ])];
    let dir = tempfile::tempdir().unwrap();
    raw_image(dir.path(), "special", &layers);
    let env = Env::new();
    let src = format!("oci:{}:special", dir.path().display());
    let r = env.list_files(&src);
    let types: Vec<(&str, &str)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert!(
        types.contains(&("/null", "char"))
            && types.contains(&("/pipe", "fifo"))
            && types.contains(&("/a", "symlink")),
        "{types:?}"
    );
    // The rewrite carries them as entries (never creating them on this machine).
    let out = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:x", out.path().display());
    env.ok(&["optimize", &src, &dst, "--offline", "-q"]);
    let listed = |reference: &str| {
        let r = env.list_files(reference);
        let mut v: Vec<String> = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} link={} device={}",
                    f["path"], f["type"], f["mode"], f["link"], f["device"]
                )
            })
            .collect();
        v.sort();
        v
    };
    let (a, b) = (listed(&src), listed(&dst));
    assert_eq!(a.len(), 5, "{a:?}");
    assert!(a[2].contains("device=\"1,3\""), "{a:?}");
    assert_eq!(a, b, "the output has the same devices, FIFO and links");
}
