//! The `weir` binary: parse the command line, then run, check or explain.

use clap::Parser;
use weir::cli::{Cli, Command};
use weir::{commands, config, control, logging, server};

fn main() {
    // SIGHUP's default action kills the process; weir handles it (live
    // reload) once running, and ignores it until then.
    // SAFETY: setting a signal disposition to SIG_IGN before any threads exist.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    let code = match &cli.command {
        Some(Command::Check { file }) => commands::check(file.as_ref().unwrap_or(&cli.config)),
        Some(Command::Explain(args)) => commands::explain(&cli.config, args),
        Some(Command::Reload) => control::reload(&cli.config),
        Some(Command::Upgrade) => control::upgrade(&cli.config),
        Some(Command::Stop { fast }) => control::stop(&cli.config, *fast),
        None => run(&cli),
    };
    std::process::exit(code);
}

fn run(cli: &Cli) -> i32 {
    let loaded = match config::load_file(&cli.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    logging::init(&loaded.config.log);
    if let Err(e) = server::run(loaded, &cli.run) {
        eprintln!("weir: {e}");
        return 1;
    }
    0
}
