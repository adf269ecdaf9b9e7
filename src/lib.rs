//! coldpress: make container images start fast on AWS Lambda.
//!
//! The data flows one way, and the modules follow it:
//! [`reference`] → [`transport`] (sources and sinks; a reference resolved to one
//! platform's manifest and config) → [`catalog`] (the AWS Lambda bases)
//! → [`layer`] (streamed tar entries) → [`fsindex`] (the final filesystem)
//! → [`packages`] (OS package databases, the runtime closure)
//! → [`analysis`] (base match, classes, strip rules, findings) → [`plan`]
//! → [`writer`] (new layers, and the read-back check) → [`smoke`] (run it before
//! tagging) → the [`transport`]'s sink → [`report`]. [`audit`], [`example`],
//! [`commands`] and [`cli`] are the shell around them. Shared leaves anyone may use:
//! [`image`] (the spec as types), [`error`], [`digest`], [`units`], [`fsutil`],
//! [`ui`], [`workdir`], [`parallel`]. A test (`module_flow.rs`) fails on an import
//! against this order.

pub mod analysis;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod error;
pub mod example;
pub mod fsindex;
pub mod fsutil;
pub mod image;
pub mod layer;
#[cfg(test)]
mod module_flow;
pub mod packages;
pub mod parallel;
pub mod plan;
pub mod reference;
pub mod report;
pub mod smoke;
pub mod transport;
pub mod ui;
pub mod units;
pub mod workdir;
pub mod writer;

pub use error::{Error, Result};
