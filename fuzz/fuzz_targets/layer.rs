//! Any bytes as an uncompressed layer (with a matching diff_id, so parsing goes
//! all the way), applied twice on a filesystem index: errors, never panics, and
//! memory stays bounded (the tar header guard).
#![no_main]
use coldpress::digest::Digest;
use coldpress::fsindex::FsIndex;
use coldpress::image::{Descriptor, MediaType};
use coldpress::layer::ReadOptions;
use coldpress::layer::read::read_layer_from;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let digest = Digest::of(data);
    let desc = Descriptor::new(MediaType::OciLayer, digest.clone(), data.len() as u64);
    let opts = ReadOptions {
        hash_contents: true,
        capture: |_| true,
        max_layer_bytes: 1 << 24,
        ..ReadOptions::default()
    };
    let Ok(listing) = read_layer_from(Box::new(std::io::Cursor::new(data.to_vec())), &desc, &digest, &opts, "fuzz") else {
        return;
    };
    let mut index = FsIndex::new();
    if index.apply(listing.entries.clone(), "fuzz 0").is_ok() && index.apply(listing.entries, "fuzz 1").is_ok() {
        index.finish();
        for (path, _) in index.iter() {
            let _ = index.resolve(path);
        }
    }
});
