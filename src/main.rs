//! The `weir` binary: parse the command line, then run, check or explain.

use clap::Parser;
use weir::admin_client::{self, Target};
use weir::cli::{CacheAction, Cli, Command};
use weir::{commands, control, logging, server};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SIGHUP's and SIGUSR1's default action kills the process; weir handles
    // them (live reload, log reopening) once running, and ignores them until then.
    // SAFETY: setting a signal disposition to SIG_IGN before any threads exist.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
    }
    // `weir manpage` prints weir(1) for the package build. It is not a clap
    // subcommand, so neither --help nor the completions offer it.
    if std::env::args_os().nth(1).is_some_and(|a| a == "manpage") {
        std::process::exit(manpage());
    }
    let cli = Cli::parse();
    let code = match &cli.command {
        Some(Command::Check { file }) => commands::check(file.as_ref().unwrap_or(&cli.config)),
        Some(Command::Explain(args)) => commands::explain(&cli.config, args),
        Some(Command::Reload) => control::reload(&cli.config),
        Some(Command::Upgrade) => control::upgrade(&cli.config),
        Some(Command::Stop { fast }) => control::stop(&cli.config, *fast),
        Some(Command::Status { admin, json }) => client(
            Target::resolve(&cli.config, admin.admin.as_deref(), admin.token.as_deref())
                .and_then(|t| admin_client::status(&t, *json)),
        ),
        Some(Command::Certs { admin, json }) => client(
            Target::resolve(&cli.config, admin.admin.as_deref(), admin.token.as_deref())
                .and_then(|t| admin_client::certs(&t, *json)),
        ),
        Some(Command::Backends {
            action,
            upstream,
            address,
            weight,
            admin,
        }) => client(
            Target::resolve(&cli.config, admin.admin.as_deref(), admin.token.as_deref()).and_then(
                |t| admin_client::backends(&t, action.as_str(), upstream, address, *weight),
            ),
        ),
        Some(Command::Cache {
            action: CacheAction::Purge { url, prefix, admin },
        }) => client(
            Target::resolve(&cli.config, admin.admin.as_deref(), admin.token.as_deref())
                .and_then(|t| admin_client::cache_purge(&t, url, *prefix)),
        ),
        Some(Command::Completions { shell }) => {
            weir::shell::completions(*shell, &mut std::io::stdout());
            0
        }
        None => run(&cli),
    };
    std::process::exit(code);
}

fn manpage() -> i32 {
    match weir::shell::manpage(&mut std::io::stdout()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weir: {e}");
            1
        }
    }
}

fn client(result: Result<String, String>) -> i32 {
    match result {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run(cli: &Cli) -> i32 {
    let loaded = match weir::compile::load_file(&cli.config, None) {
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
