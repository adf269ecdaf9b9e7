//! Proof before tagging: read the new layers back from the exact bytes written,
//! apply them on the base layers' filesystem, and compare with what the output
//! must be (the source's filesystem minus the removed paths): types, modes,
//! owners, mtimes, xattrs, link targets, devices and content hashes.
//!
//! Reading back happens per layer as soon as it is written (while other layers
//! are still being compressed); the comparison runs once all are back.

use std::fs::File;

use super::Plan;
use crate::analysis::Analysis;
use crate::error::{Error, IoContext, Result};
use crate::fsindex::compare;
use crate::image::Descriptor;
use crate::layer::read::read_layer_from;
use crate::layer::{LayerListing, ReadOptions};
use crate::writer::rewrite::Written;

/// Parse a written layer from its file, checking its digest and diff_id.
pub fn read_back(desc: &Descriptor, w: &Written) -> Result<LayerListing> {
    let f = File::open(&w.layer.path)
        .with_ctx(|| format!("reading back the {} layer", w.class.as_str()))?;
    let what = format!("new {} layer {}", w.class.as_str(), desc.digest);
    let opts = ReadOptions {
        hash_contents: true,
        ..ReadOptions::default()
    };
    read_layer_from(
        Box::new(std::io::BufReader::new(f)),
        desc,
        &w.layer.diff_id,
        &opts,
        &what,
    )
}

/// Apply the read-back layers (in output order) on the base and compare.
pub fn compare_with_source(
    a: &Analysis,
    plan: &Plan,
    read_back: Vec<(String, LayerListing)>,
) -> Result<()> {
    let expected = plan.expected(a);
    let mut actual = a.base_index.clone();
    for (what, listing) in read_back {
        actual.apply(listing.entries, &what)?;
    }
    let diffs = compare(&expected, &actual);
    if diffs.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = diffs.iter().take(5).map(|d| d.to_string()).collect();
    Err(Error::Verify(format!(
        "the rewritten image differs from the source minus the removed paths in {} place(s): {}; nothing was tagged",
        diffs.len(),
        shown.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{AnalyzeOptions, analyze};
    use crate::catalog::Catalog;
    use crate::image::resolve::resolve;
    use crate::transport::Source;
    use crate::transport::oci_layout::OciLayoutSource;

    /// The proof must refuse a rewrite that is not the source minus the removals.
    /// Stand-in for a broken writer: "written" layers that are the source's own,
    /// so every path the plan removes is still there.
    #[test]
    fn a_rewrite_that_kept_the_removed_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::example::write_example(dir.path()).unwrap();
        let src = OciLayoutSource::open(dir.path(), Some("app")).unwrap();
        let image = resolve(&src, None).unwrap();
        let mut opts = AnalyzeOptions::default();
        opts.read.hash_contents = true;
        let a = analyze(&src, image, &Catalog::empty(), &opts).unwrap();
        // Every removed path, directories included.
        let removed = a.strip.decisions.iter().filter(|d| d.is_some()).count();
        assert!(removed > 0, "the example has files to strip");
        let plan = Plan::new(&a);

        let read = ReadOptions {
            hash_contents: true,
            ..ReadOptions::default()
        };
        let unchanged: Vec<(String, LayerListing)> = a
            .layers
            .iter()
            .map(|l| {
                let raw = src.open_blob(&l.descriptor).unwrap();
                let listing =
                    read_layer_from(raw, &l.descriptor, &l.diff_id, &read, "source layer").unwrap();
                ("new layer".to_string(), listing)
            })
            .collect();
        let err = compare_with_source(&a, &plan, unchanged).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Verify(_)), "{msg}");
        assert!(
            msg.contains(&format!("in {removed} place(s)")) && msg.contains("nothing was tagged"),
            "one difference per removed path: {msg}"
        );
    }
}
