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
