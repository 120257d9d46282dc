//! The `weir` binary: parse the command line, then run, check or explain.

use clap::Parser;
use weir::cli::{Cli, Command};
use weir::{commands, config, logging, server};

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Some(Command::Check { file }) => commands::check(file.as_ref().unwrap_or(&cli.config)),
        Some(Command::Explain(args)) => commands::explain(&cli.config, args),
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
