use std::process::ExitCode;

use clap::Parser;
use coldpress::cli::{Cli, Command};
use coldpress::{commands, ui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::SandboxExec(s) = &cli.command {
        coldpress::smoke::sandbox::helper_main(&s.spec);
    }
    ui::init(cli.global.verbose, cli.global.quiet);
    if let Some(secs) = cli.global.deadline {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(secs));
            eprintln!("error: the --deadline of {secs} s passed; stopping");
            std::process::exit(1);
        });
    }
    let result = match &cli.command {
        Command::Analyze(a) => commands::analyze::run(a),
        Command::Optimize(o) => commands::optimize::run(o),
        Command::Audit(a) => commands::audit::run(a),
        Command::Completions(c) => {
            coldpress::cli::write_completions(c.shell, &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Smoke(s) => commands::smoke::run(s),
        Command::SandboxExec(_) => unreachable!("handled above"),
        Command::Example(e) => coldpress::example::write_example(&e.dir).map(|written| {
            for (tag, digest) in written {
                println!("oci:{}:{tag}\t{digest}", e.dir.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", render_error(&e));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// uv's shape: the thing that failed, the typed causes under it, one thing to do.
fn render_error(e: &coldpress::error::Error) -> String {
    let mut out = format!("error: {e}\n");
    for cause in coldpress::error::causes(e) {
        out.push_str(&format!("  caused by: {cause}\n"));
    }
    if let Some(hint) = e.hint() {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}
