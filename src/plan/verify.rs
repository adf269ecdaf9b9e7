//! Proof before tagging: read the new layers back from the exact bytes written,
//! apply them on the base layers' filesystem, and compare with what the output
//! must be (the source's filesystem minus the removed paths): types, modes,
//! owners, mtimes, xattrs, link targets, devices and content hashes.

use std::fs::File;

use super::Plan;
use crate::analysis::Analysis;
use crate::error::{Error, IoContext, Result};
use crate::fsindex::compare;
use crate::image::Descriptor;
use crate::layer::ReadOptions;
use crate::layer::read::read_layer_from;
use crate::writer::rewrite::Written;

pub fn verify(a: &Analysis, plan: &Plan, written: &[(Descriptor, &Written)]) -> Result<()> {
    let expected = plan.expected(a);
    let mut actual = a.base_index.clone();
    let opts = ReadOptions {
        hash_contents: true,
        ..ReadOptions::default()
    };
    for (desc, w) in written {
        let f = File::open(&w.layer.path)
            .with_ctx(|| format!("reading back the {} layer", w.class.as_str()))?;
        let what = format!("new {} layer {}", w.class.as_str(), desc.digest);
        let listing = read_layer_from(
            Box::new(std::io::BufReader::new(f)),
            desc,
            &w.layer.diff_id,
            &opts,
            &what,
        )?;
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
