use super::*;

fn meta() -> Meta {
    Meta {
        mode: 0o644,
        ..Meta::default()
    }
}

fn e(path: &str, kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        meta: meta(),
        size,
        data_offset: 0,
        content_hash: None,
        captured: None,
        sparse: false,
    }
}

fn file(path: &str, size: u64) -> Entry {
    e(path, EntryKind::File, size)
}
fn dir(path: &str) -> Entry {
    e(path, EntryKind::Dir, 0)
}

fn paths(ix: &FsIndex) -> Vec<&str> {
    ix.iter().map(|(p, _)| p).collect()
}

#[test]
fn whiteout_deletes_lower_subtree_and_counts_waste_once() {
    let mut ix = FsIndex::new();
    ix.apply(
        vec![dir("a"), file("a/x", 100), file("a/y", 50), file("b", 7)],
        "l0",
    )
    .unwrap();
    ix.apply(vec![e("a", EntryKind::Whiteout, 0), file("b", 9)], "l1")
        .unwrap();
    ix.finish();
    assert_eq!(paths(&ix), vec!["b"]);
    // 150 bytes deleted + 7 shadowed, each counted once; the kept "b" is not waste.
    assert_eq!(ix.wasted_bytes(), 157);
    assert_eq!(ix.layers[0].deleted_bytes, 150);
    assert_eq!(ix.layers[0].shadowed_bytes, 7);
    assert_eq!(
        ix.layers[1].deleted,
        Count {
            files: 2,
            bytes: 150
        }
    );
    assert_eq!(ix.layers[1].changed, Count { files: 1, bytes: 9 });
}

#[test]
fn opaque_applies_before_the_layers_own_entries() {
    let mut ix = FsIndex::new();
    ix.apply(
        vec![
            dir("d"),
            file("d/old", 1),
            dir("d/sub"),
            file("d/sub/deep", 2),
        ],
        "l0",
    )
    .unwrap();
    // The marker comes after the new file in the tar: the new file must survive.
    ix.apply(
        vec![dir("d"), file("d/new", 3), e("d", EntryKind::Opaque, 0)],
        "l1",
    )
    .unwrap();
    ix.finish();
    assert_eq!(paths(&ix), vec!["d", "d/new"]);
    assert_eq!(ix.wasted_bytes(), 3);
}

#[test]
fn file_replacing_directory_removes_subtree_and_back() {
    let mut ix = FsIndex::new();
    ix.apply(vec![dir("x"), file("x/a", 5), file("y", 1)], "l0")
        .unwrap();
    ix.apply(vec![file("x", 2), dir("y"), file("y/z", 4)], "l1")
        .unwrap();
    ix.finish();
    assert_eq!(paths(&ix), vec!["x", "y", "y/z"]);
    assert_eq!(ix.get("x").unwrap().ftype, FileType::File);
    assert!(ix.get("y").unwrap().is_dir());
    assert_eq!(ix.wasted_bytes(), 6);
}

#[test]
fn hardlink_keeps_content_alive_after_target_is_deleted() {
    let mut ix = FsIndex::new();
    ix.apply(
        vec![file("t", 100), e("l", EntryKind::Hardlink("t".into()), 0)],
        "l0",
    )
    .unwrap();
    ix.apply(vec![e("t", EntryKind::Whiteout, 0)], "l1")
        .unwrap();
    ix.finish();
    assert_eq!(paths(&ix), vec!["l"]);
    let l = ix.get("l").unwrap();
    assert_eq!(ix.size_of(l), 100);
    assert_eq!(l.hardlink_to.as_deref(), Some("t"));
    assert_eq!(
        ix.wasted_bytes(),
        0,
        "the bytes are still reachable through the link"
    );
}

#[test]
fn hardlink_to_missing_target_is_an_error() {
    let mut ix = FsIndex::new();
    let err = ix
        .apply(vec![e("l", EntryKind::Hardlink("nowhere".into()), 0)], "l0")
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn entries_through_symlinks_are_refused() {
    let mut ix = FsIndex::new();
    ix.apply(vec![e("etc", EntryKind::Symlink("/tmp".into()), 0)], "l0")
        .unwrap();
    let err = ix.apply(vec![file("etc/passwd", 1)], "l1").unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[test]
fn missing_parents_are_created_and_counted() {
    let mut ix = FsIndex::new();
    ix.apply(vec![file("a/b/c", 1)], "l0").unwrap();
    assert_eq!(paths(&ix), vec!["a", "a/b", "a/b/c"]);
    assert!(ix.get("a").unwrap().implicit);
    assert_eq!(ix.layers[0].implicit_parents, 2);
}

#[test]
fn whiteout_does_not_hide_same_layer_entries() {
    let mut ix = FsIndex::new();
    ix.apply(vec![file("f", 1)], "l0").unwrap();
    ix.apply(vec![file("f", 2), e("f", EntryKind::Whiteout, 0)], "l1")
        .unwrap();
    ix.finish();
    assert_eq!(ix.size_of(ix.get("f").unwrap()), 2);
}

#[test]
fn ordering_keeps_subtrees_contiguous() {
    let mut ix = FsIndex::new();
    ix.apply(
        vec![
            dir("a"),
            file("a-b", 1),
            file("a/z", 1),
            file("a.c", 1),
            dir("a/b"),
            file("a/b/c", 1),
        ],
        "l0",
    )
    .unwrap();
    assert_eq!(paths(&ix), vec!["a", "a/b", "a/b/c", "a/z", "a-b", "a.c"]);
    let d: Vec<&str> = ix.descendants("a").map(|(p, _)| p).collect();
    assert_eq!(d, vec!["a/b", "a/b/c", "a/z"]);
}

#[test]
fn resolves_symlink_chains() {
    let mut ix = FsIndex::new();
    ix.apply(
        vec![
            dir("usr"),
            dir("usr/bin"),
            file("usr/bin/gcc-12", 1),
            e("usr/bin/gcc", EntryKind::Symlink("gcc-12".into()), 0),
            e("bin", EntryKind::Symlink("usr/bin".into()), 0),
            e("cc", EntryKind::Symlink("/bin/gcc".into()), 0),
        ],
        "l0",
    )
    .unwrap();
    assert_eq!(ix.resolve("cc").as_deref(), Some("usr/bin/gcc-12"));
    assert_eq!(FsIndex::symlink_destination("a/b/c", "../../x"), "x");
}

#[test]
fn compare_reports_every_kind_of_difference() {
    let mut a = FsIndex::new();
    let mut f1 = file("same", 3);
    f1.content_hash = Some(1);
    let mut g1 = file("content", 3);
    g1.content_hash = Some(1);
    a.apply(vec![f1.clone(), g1, file("gone", 1), dir("d")], "a")
        .unwrap();
    let mut b = FsIndex::new();
    let mut g2 = file("content", 3);
    g2.content_hash = Some(2);
    let mut d2 = dir("d");
    d2.meta.mode = 0o700;
    b.apply(vec![f1, g2, file("extra", 1), d2], "b").unwrap();
    let diffs: Vec<String> = compare(&a, &b).iter().map(|d| d.to_string()).collect();
    assert_eq!(
        diffs,
        vec![
            "/content differs: content",
            "/d differs: mode 644 vs 700",
            "/extra should not be there",
            "/gone is missing",
        ]
    );
}
