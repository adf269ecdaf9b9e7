//! Every flag, in one place, with its documentation next to it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::analysis::Profile;
use crate::image::Platform;
use crate::units::parse_size;

#[derive(Parser, Debug)]
#[command(
    name = "coldpress",
    version,
    about = "Make container images start fast on AWS Lambda: analyze, strip, re-layer, push.",
    after_help = "Images: [docker://]HOST/REPO[:TAG][@DIGEST], Docker Hub short names (python:3.12), oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG].\nExit codes: 0 ok, 1 error, 2 usage, 3 a --fail-* threshold was crossed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Print what coldpress does (requests, cache use) on stderr. Secrets are never printed.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print nothing on stderr but errors (no progress, no warnings).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Give up after this many seconds in total (exit 1). Blobs may be left in the
    /// destination, but a tag is only ever set by the final, atomic manifest write.
    #[arg(long, global = true, value_name = "SECS")]
    pub deadline: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report layers, base image, cold-start bytes, waste, what optimize would strip, and findings.
    Analyze(Box<AnalyzeArgs>),
    /// Strip and re-layer an image (base | system | deps | code), push it, and report before/after.
    Optimize(Box<OptimizeArgs>),
    /// Analyze every image of a registry: a ranked report of cold-start bytes and savings (JSONL, JSON, Markdown, HTML).
    Audit(Box<AuditArgs>),
    /// Write the built-in example images (a stand-in Lambda base and a naive function image) to an OCI layout.
    Example(ExampleArgs),
    /// Print a shell completion script (e.g. `coldpress completions bash > /etc/bash_completion.d/coldpress`).
    Completions(CompletionsArgs),
    /// Run an image the way Lambda does, in a sandbox, and send it events over a built-in Runtime API.
    Smoke(Box<SmokeArgs>),
    /// Internal: the smoke run's sandbox helper (started by coldpress itself).
    #[command(hide = true)]
    SandboxExec(SandboxExecArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Write the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "coldpress", out);
}

/// One layer per core: reading a layer is decompression and hashing, CPU-bound.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Error,
}

/// How to reach registries.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Use plain HTTP for this registry (loopback registries always do). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Username for the registries named on the command line (with --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password or token for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Seconds a single read or write may stall before the request is retried.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// Attempts per request on 429/5xx and network errors (with backoff and jitter).
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub retries: u32,
}

/// Which images count as pre-cached bases.
#[derive(Args, Debug, Clone)]
pub struct BaseArgs {
    /// An image whose layers count as pre-cached, like the AWS Lambda bases. Repeatable.
    #[arg(long = "base-image", value_name = "REF")]
    pub base_image: Vec<String>,
    /// Do not contact public.ecr.aws: use the disk cache and --base-image only.
    #[arg(long)]
    pub offline: bool,
    /// Re-resolve the AWS Lambda base catalog even if the cache is fresh.
    #[arg(long, conflicts_with = "offline")]
    pub refresh_bases: bool,
    /// Cache directory (default $XDG_CACHE_HOME/coldpress or ~/.cache/coldpress).
    #[arg(long, value_name = "DIR", env = "COLDPRESS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// What to strip.
#[derive(Args, Debug, Clone)]
pub struct StripArgs {
    /// Rule set: safe (build-only OS packages, toolchains, caches, tests, dev deps, docs, VCS litter) or aggressive (also locales, stubs, source maps).
    #[arg(long, value_enum, default_value_t = Profile::Safe)]
    pub profile: Profile,
    /// Also remove paths matching this glob (e.g. '/var/task/**/*.md'). Repeatable.
    #[arg(long = "strip", value_name = "GLOB")]
    pub strip: Vec<String>,
    /// Never remove paths matching this glob (wins over every rule). Repeatable.
    #[arg(long = "keep", value_name = "GLOB")]
    pub keep: Vec<String>,
    /// Also count task-root files matching this glob as assets (their own layer below
    /// the code, e.g. '/var/task/models/**'). Repeatable.
    #[arg(long = "assets", value_name = "GLOB")]
    pub assets: Vec<String>,
    /// Non-source task-root files of at least SIZE are assets, not code (e.g. 4MiB, 10MB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4MiB")]
    pub assets_threshold: u64,
    /// Treat this OS package as build-only: it goes with what only it needed, unless something kept needs it. Repeatable.
    #[arg(long = "strip-package", value_name = "NAME")]
    pub strip_packages: Vec<String>,
    /// Keep this OS package (and what it needs) whatever the rules say. Repeatable.
    #[arg(long = "keep-package", value_name = "NAME")]
    pub keep_packages: Vec<String>,
}

/// How much to read at once and what to refuse.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Platform to pick from a multi-platform index (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Layers processed at the same time (default: the available parallelism).
    #[arg(long, default_value_t = default_jobs(), value_name = "N")]
    pub jobs: usize,
    /// Refuse a layer that decompresses to more than this many bytes.
    #[arg(long, default_value_t = 32 << 30, value_name = "BYTES")]
    pub max_layer_size: u64,
    /// Refuse an image with more tar entries than this in all its layers (memory grows with entries).
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    pub max_entries: usize,
    /// Refuse an image whose layers decompress to more than this many bytes in total.
    #[arg(long, default_value_t = 64 << 30, value_name = "BYTES")]
    pub max_image_size: u64,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// The image to analyze.
    pub image: String,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Include every final path with its class, reason, layer and strip rule (JSON `files`, text listing).
    #[arg(long)]
    pub list_files: bool,
    /// Exit with code 3 if any finding is at least this severe.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub strip: StripArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    Oci,
    Docker,
}

#[derive(Args, Debug)]
pub struct OptimizeArgs {
    /// The image to slim.
    pub source: String,
    /// Where to write the result (registry, oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG]).
    pub destination: String,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the JSON report (with every removed path) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the plan (what would be removed, the new layers) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Compression of the new layers. gzip is what Lambda is known to accept; zstd suits ECS/Fargate.
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
    pub compression: LayerCompression,
    /// Compression level (gzip 0-9, default 6; zstd 1-19, default 3).
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,
    /// Manifest family of the output (default: the source's; zstd needs oci).
    #[arg(long, value_enum)]
    pub manifest_format: Option<ManifestFormat>,
    /// Skip reading the written layers back and comparing the result with the source.
    #[arg(long)]
    pub no_verify: bool,
    /// Exit with code 3 (and tag nothing) if the output's cold-start bytes exceed SIZE (e.g. 150MB, 100MiB).
    /// Checked on the written layers: refused with --dry-run.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub fail_if_cold_start_bytes_over: Option<u64>,
    /// Exit with code 3 (and tag nothing) if cold-start bytes shrink by less than PERCENT.
    /// Checked on the written layers: refused with --dry-run.
    #[arg(long, value_name = "PERCENT")]
    pub fail_if_savings_under: Option<f64>,
    /// Reuse layers an earlier output recorded (config label dev.coldpress.layer-keys)
    /// from this image, and the layer listings attached to it (its referrers tag).
    /// Default: what the destination tag points to now.
    #[arg(long, value_name = "REF")]
    pub reuse_from: Option<String>,
    /// Use no earlier output's layers or listings; only this machine's own cache
    /// (--cache-dir) still serves.
    #[arg(long, conflicts_with = "reuse_from")]
    pub no_reuse: bool,
    /// Directory for spooled layers (default: the system temp directory).
    #[arg(long, value_name = "DIR", env = "COLDPRESS_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub smoke: SmokeGateArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub strip: StripArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The smoke run before anything is tagged (docs/smoke.md).
#[derive(Args, Debug, Clone)]
pub struct SmokeGateArgs {
    /// Run the source and the output with this event (JSON) over a built-in Lambda Runtime API
    /// and tag nothing unless the output answers as the source does. Repeatable.
    #[arg(long = "smoke", value_name = "FILE", conflicts_with = "dry_run")]
    pub smoke: Vec<PathBuf>,
    /// Seconds the function may take to start, and then for each event.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub smoke_timeout: u64,
    /// Compare answers as JSON without this field (e.g. '$.timestamp', '$.items[*].id'). Repeatable.
    #[arg(long = "smoke-ignore", value_name = "JSONPATH")]
    pub smoke_ignore: Vec<crate::smoke::JsonPath>,
}

#[derive(Args, Debug)]
pub struct SmokeArgs {
    /// The image to run.
    pub image: String,
    /// An event (a JSON file) to send. Repeatable; sent in order.
    #[arg(long = "event", value_name = "FILE", required = true)]
    pub event: Vec<PathBuf>,
    /// Seconds the function may take to start, and then for each event.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub smoke_timeout: u64,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Directory for the materialised filesystem (default: the system temp directory).
    #[arg(long, value_name = "DIR", env = "COLDPRESS_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct SandboxExecArgs {
    pub spec: PathBuf,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// The registry to audit (HOST[:PORT]).
    #[arg(required = true)]
    pub registry: Option<String>,
    /// Only repositories matching this glob (e.g. 'lambda/*'). Repeatable.
    #[arg(long = "repo", value_name = "GLOB")]
    pub repo: Vec<String>,
    /// Read the repository names from this file (one per line) instead of /v2/_catalog.
    #[arg(long, value_name = "FILE")]
    pub repos_from: Option<PathBuf>,
    /// How many tags per repository: the N newest (by the config's created time) or all.
    #[arg(long, default_value = "1", value_name = "N|all")]
    pub tags: crate::audit::TagSelection,
    /// Images analyzed at the same time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Audit only this worker's share of the repositories (i/n, by a stable hash of the name).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::audit::Shard>,
    /// Output directory: audit.jsonl (appended as images finish; a rerun resumes), summary.json, summary.md, index.html.
    #[arg(long, value_name = "DIR", required = true)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub strip: StripArgs,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Join the outputs of sharded audits into one report.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output directories of `coldpress audit --shard`.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExampleArgs {
    /// Directory for the OCI layout (created if missing). Tags: base, app, app-v2.
    pub dir: PathBuf,
}
