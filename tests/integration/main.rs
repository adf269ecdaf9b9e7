//! coldpress's integration tests: one test binary, one module per feature.
//!
//! One binary rather than one per file, as ripgrep does: `support` (the real
//! registry, umoci and skopeo helpers, the fixtures) and the test code are compiled
//! and linked once. A test's name starts with its module, so one area runs alone
//! with a filter: `cargo nextest run -E 'test(/^tls::/)'` or `scripts/test tls::`.
//!
//! Where a test goes, feature -> module file (a new file gets a `mod` line below
//! and a line here; a file without one is not compiled):
//!
//! - analyze's final filesystem equals `umoci unpack`'s, for every layer rule,
//!   media-type family, compression and transport; indexes with attestations
//!   -> `analyze_edge.rs`
//! - `coldpress audit`: a registry's images, shared layers fetched once, resume,
//!   shards, merge, the HTML page in a headless browser -> `audit.rs`
//! - bad references, missing images, corrupt blobs, malformed manifests: one clear
//!   error, no panic -> `bad_input.rs`
//! - base-image matching, stale bases, the base catalog and its cache
//!   -> `base_catalog.rs`
//! - registry faults (5xx, 429 with Retry-After, resets, stalls, truncated bodies)
//!   and the retries that survive them -> `faults.rs`
//! - flags that change a run across commands (`--fail-on`, `--no-verify`,
//!   `--compression-level`, `--work-dir`, `--refresh-bases`, `--jobs`,
//!   completions) -> `flags.rs`
//! - hostile layers (traversal, decompression bombs, devices, link loops)
//!   -> `hostile.rs`
//! - the repository's Dockerfile, built with buildah and run -> `install.rs`
//! - SIGKILL during optimize: no partial tag, the next run resumes -> `kill.rs`
//! - the ML image (pip, a large model) and its code-only redeploy -> `ml.rs`
//! - `coldpress optimize`: output equals source minus removed paths, base kept,
//!   destinations, `--strip`/`--keep`, `--dry-run` and thresholds,
//!   `--reuse-from` -> `optimize.rs`
//! - OS package databases other than dpkg (apk, rpm) -> `os_packages.rs`
//! - the realistic Debian + PyPI Lambda image, end to end -> `realistic.rs`
//! - credentials: docker config `auths`, `credHelpers`, `credsStore`,
//!   `--password-stdin` -> `registry_auth.rs`
//! - `coldpress smoke` and `optimize --smoke`: real runtimes in the sandbox
//!   -> `smoke.rs`
//! - tar header quirks, read differentially against Go's archive/tar
//!   -> `tar_corpus.rs`
//! - HTTPS registries and private CAs -> `tls.rs`
//! - bearer-token auth against a real token server -> `token_auth.rs`
//! - the shared harness -> `support/`: `mod.rs` (`Env`, `Registry`, umoci and
//!   skopeo, the realistic fixture, `ErrorBlock`), `edge.rs` (synthetic images
//!   for every layer rule), `listing.rs` (file listings to compare), `ml.rs` (the
//!   ML fixture), `proxy.rs` (the fault-injecting proxy), `token.rs` (the token
//!   server).
//!
//! Test data lives beside this directory and is found through `CARGO_MANIFEST_DIR`:
//! `tests/fixtures/` (the realistic image's build script, the smoke functions),
//! `tests/html/` (the audit page's browser check), `tests/tar_corpus/generate.py`.

mod support;

mod analyze_edge;
mod audit;
mod bad_input;
mod base_catalog;
mod faults;
mod flags;
mod hostile;
mod install;
mod kill;
mod ml;
mod optimize;
mod os_packages;
mod realistic;
mod registry_auth;
mod smoke;
mod tar_corpus;
mod tls;
mod token_auth;
