//! The modules follow the data, and this test keeps it that way: no module imports
//! one that comes later in the flow. An import against the flow is how a cycle
//! starts (`image` needing `transport` needing `image`), and a cycle is how a
//! module stops being readable, or testable, on its own.
//!
//! The check reads the sources, not the compiler's view: every `crate::NAME` path
//! outside comments and test code. Test code (everything from a file's first
//! `#[cfg(test)]`, which by convention closes the file, and `tests.rs` files) may
//! use any module: a test of the writer builds its input with the example images.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Shared leaves: anyone may use them, and they use only each other. `image` is
/// here because it is the spec as types (manifests, configs, descriptors, media
/// types): every stage speaks it, and it needs nothing but digests.
const LEAVES: &[&str] = &[
    "error", "digest", "units", "fsutil", "ui", "workdir", "parallel", "image",
];

/// The stages in the order the data passes them. A stage may import the leaves and
/// any stage before it, never one after it. The last group is the shell, which
/// ties the stages together and may import anything, each other included.
const FLOW: &[&[&str]] = &[
    &["reference"],
    // Sources and sinks, and resolving a reference to one platform's manifest and config.
    &["transport"],
    // The AWS Lambda bases, read through a transport; what the analysis matches against.
    &["catalog"],
    &["layer"],
    &["fsindex"],
    &["packages"],
    &["analysis"],
    &["plan"],
    &["writer"],
    &["smoke"],
    &["report"],
    &["audit", "example", "commands", "cli"],
];

/// `None` for a leaf, else the stage's position in [`FLOW`].
fn rank(module: &str) -> Option<Option<usize>> {
    if LEAVES.contains(&module) {
        return Some(None);
    }
    FLOW.iter().position(|g| g.contains(&module)).map(Some)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source file names as `crate::NAME` or `crate::{A, B::…}`.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `coldpress_crate::` or `my_crate::` are other paths.
        if code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Each item at the top level of the braces starts with a module name.
            let mut depth = 1;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "Error" && m != "Result");
    out
}

#[test]
fn no_module_imports_one_later_in_the_data_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.strip_suffix(".rs").unwrap_or(first);
        // The crate root and the binary see everything; tests.rs is test code.
        if matches!(module, "lib" | "main" | "module_flow") || rel.ends_with("tests.rs") {
            continue;
        }
        let Some(from) = rank(module) else {
            wrong.push(format!(
                "{}: module `{module}` has no place in module_flow.rs (a leaf or a stage of FLOW)",
                rel.display()
            ));
            continue;
        };
        for to in imported_modules(&std::fs::read_to_string(f).unwrap()) {
            if to == module {
                continue;
            }
            let ok = match (from, rank(&to)) {
                (_, None) => false,
                (_, Some(None)) => true,
                (None, Some(Some(_))) => false,
                (Some(a), Some(Some(b))) => b <= a,
            };
            if !ok {
                wrong.push(format!(
                    "{}: `{module}` imports `{to}`, which is {}",
                    rel.display(),
                    match rank(&to) {
                        None => "not in module_flow.rs".to_string(),
                        Some(_) if from.is_none() => "not a leaf (a leaf uses only leaves)".into(),
                        _ => "later in the data flow".into(),
                    }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the flow:\n{}",
        wrong.join("\n")
    );
}

/// The README's "The code follows the data" paragraph names the stages in [`FLOW`]'s order.
#[test]
fn the_readme_names_the_stages_in_flow_order() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("The code follows the data")
        .expect("the README describes the data flow");
    let para = &readme[start..];
    let para = &para[..para.find("\n- ").unwrap_or(para.len())];
    let stages: Vec<&str> = FLOW[..FLOW.len() - 1]
        .iter()
        .flat_map(|g| g.iter().copied())
        .collect();
    let named: Vec<&str> = para
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| stages.contains(w))
        .collect();
    assert_eq!(named, stages, "README: {para}");
}

#[test]
fn imports_are_read_from_paths_groups_and_not_from_comments_or_tests() {
    let src = "use crate::layer::Entry;\nuse crate::{digest::Digest, image::{Descriptor, Index}};\n\
               // crate::report::x in a comment\nlet x = crate::ui::trace(|| my_crate::y);\n\
               #[cfg(test)]\nmod tests { use crate::example; }\n";
    let got: Vec<String> = imported_modules(src).into_iter().collect();
    assert_eq!(got, ["digest", "image", "layer", "ui"]);
}
