//! Any bytes as a manifest, index or config: errors, never panics.
#![no_main]
use coldpress::image::{ImageConfig, Index, Manifest, sniff_media_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff_media_type(data, "fuzz");
    if let Ok(m) = Manifest::parse(data, "fuzz") {
        let _ = m.is_docker();
        for l in &m.layers {
            let _ = l.media_type.layer_compression();
        }
    }
    let _ = Index::parse(data, "fuzz");
    if let Ok(c) = ImageConfig::parse(data, "fuzz") {
        let _ = c.layer_history();
        let _ = c.env("LAMBDA_TASK_ROOT");
    }
});
