//! `weir completions bash|zsh|fish` and the weir(1) man page come from the
//! clap definition: each names every real subcommand, and an unknown shell
//! is a usage error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::WEIR_BIN;
use std::process::Command;

const SUBCOMMANDS: [&str; 10] = [
    "check",
    "explain",
    "reload",
    "upgrade",
    "stop",
    "status",
    "backends",
    "cache",
    "certs",
    "completions",
];

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(WEIR_BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn completions_name_every_subcommand_in_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, text) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        for sub in SUBCOMMANDS {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
        // Flags and values come along: -c / --conf and the backends actions.
        assert!(text.contains("conf"), "{shell}");
        assert!(text.contains("drain"), "{shell}");
        assert!(
            !text.contains("manpage"),
            "{shell} completes a hidden command"
        );
    }
    let (_, bash) = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F _weir"), "{bash}");
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let (code, _) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2);
}

#[test]
fn man_page_lists_every_subcommand_and_option() {
    let (code, text) = run(&["manpage"]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with(".ie") || text.contains(".TH weir 1"),
        "{text}"
    );
    for sub in SUBCOMMANDS {
        assert!(
            text.contains(&format!("\\fBweir {sub}")),
            "man page lacks {sub}"
        );
    }
    for flag in ["\\-\\-conf", "\\-\\-daemon", "\\-\\-upgrade"] {
        assert!(text.contains(flag), "man page lacks {flag}");
    }
}
