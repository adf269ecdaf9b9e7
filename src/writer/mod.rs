//! Writing images: deterministic tar layers (sorted, fixed headers, no wall-clock
//! time), compressed and hashed in one pass, and the config and manifest that
//! describe them; `execute` carries out a plan with them, up to (and apart from)
//! tagging the result.

pub mod config;
pub mod execute;
pub mod image;
pub mod layer;
pub mod memo;
pub mod output;
pub mod pgzip;
pub mod rewrite;
pub mod verify;

pub use layer::{LayerWriter, WriteKind, WrittenLayer};
