//! Reading a layer: one streaming pass from blob bytes to tar entries.
//!
//! blob → sha256 (digest) → decompress → sha256 (diff_id) → [spool] → tar entries.
//! Nothing holds a layer in memory; each entry becomes compact metadata.

pub mod attached;
pub mod cache;
pub mod compression;
pub mod entry;
pub mod program;
pub mod read;
pub mod tar;

pub use entry::{Entry, EntryKind, Meta};
pub use read::{LayerListing, ReadOptions, read_layer};
