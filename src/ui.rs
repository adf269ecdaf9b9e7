//! Messages on stderr: warnings, `--verbose` traces and progress bars. Machine
//! output (reports) goes to stdout only; progress bars appear only on a terminal.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static VERBOSE: AtomicU8 = AtomicU8::new(0);
static QUIET: AtomicBool = AtomicBool::new(false);
static BARS: OnceLock<MultiProgress> = OnceLock::new();

pub fn init(verbose: u8, quiet: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed) > 0
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| {
        let target = if std::io::stderr().is_terminal() && !quiet() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        MultiProgress::with_draw_target(target)
    })
}

fn print(line: &str) {
    bars().suspend(|| eprintln!("{line}"));
}

/// A trace line for `--verbose`. Callers never pass secrets here.
pub fn trace(msg: impl FnOnce() -> String) {
    if verbose() {
        print(&format!("coldpress: {}", msg()));
    }
}

pub fn warn(msg: &str) {
    if !quiet() {
        print(&format!("warning: {msg}"));
    }
}

pub fn note(msg: &str) {
    if !quiet() {
        print(&format!("note: {msg}"));
    }
}

/// A byte-progress bar for one blob; hidden unless stderr is a terminal.
pub fn bytes_bar(total: u64, label: String) -> ProgressBar {
    let pb = bars().add(ProgressBar::new(total));
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:24} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
        )
        .expect("valid template"),
    );
    pb.set_message(label);
    pb
}
