//! coldpress: make container images start fast on AWS Lambda.
//!
//! The data flows one way, and the modules follow it:
//! [`reference`] → [`transport`] (sources and sinks) → [`image`] (manifest, config)
//! → [`layer`] (streamed tar entries) → [`fsindex`] (the final filesystem)
//! → [`packages`] (OS package databases, the runtime closure)
//! → [`analysis`] (base match, classes, strip rules, findings) → [`plan`]
//! → [`writer`] (new layers) → [`smoke`] (run it before tagging) → [`transport`] (sink)
//! → [`report`].

pub mod analysis;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod error;
pub mod example;
pub mod fsindex;
pub mod image;
pub mod layer;
pub mod packages;
pub mod parallel;
pub mod plan;
pub mod reference;
pub mod report;
pub mod smoke;
pub mod transport;
pub mod ui;
pub mod workdir;
pub mod writer;

pub use error::{Error, Result};
