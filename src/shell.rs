//! Shell completions (`weir completions bash|zsh|fish`) and the weir(1) man
//! page (`weir manpage`, outside the clap definition so that neither `--help`
//! nor the completions offer it), both generated from the clap definition in
//! [`crate::cli`] so they cannot drift from `--help`.

use crate::cli::{Cli, Shell};
use clap::CommandFactory;
use std::io::Write;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "weir", out);
}

/// Writes weir(1) in roff to `out`.
pub fn manpage(out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    render_commands(&cmd, out)?;
    render_files(out)?;
    man.render_version_section(out)?;
    Ok(())
}

/// A COMMANDS section: each visible subcommand with its synopsis and help.
fn render_commands(cmd: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone().bin_name(format!("weir {}", sub.get_name()));
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ");
        writeln!(out, ".TP")?;
        writeln!(out, "\\fB{}\\fR", roff_escape(usage))?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", roff_escape(&about.to_string()))?;
        }
    }
    Ok(())
}

fn render_files(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, ".SH FILES")?;
    for (path, what) in [
        (crate::cli::DEFAULT_CONFIG, "the config file (-c default)"),
        ("/var/lib/weir", "state (admin.state_file)"),
        ("/var/log/weir", "logs"),
        ("/run/weir", "pid file and upgrade socket"),
    ] {
        writeln!(out, ".TP\n\\fI{path}\\fR\n{what}")?;
    }
    writeln!(
        out,
        ".SH EXIT STATUS\n0 success, 1 failure (reason on stderr), 2 usage error."
    )?;
    Ok(())
}

/// Escapes text for roff: backslashes, and a leading `.` or `'`.
fn roff_escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_lists_every_visible_subcommand() {
        let mut out = Vec::new();
        manpage(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for name in [
            "check", "explain", "reload", "upgrade", "stop", "status", "backends",
        ] {
            assert!(
                text.contains(&format!("\\fBweir {name}")),
                "{name} in {text}"
            );
        }
        assert!(!text.contains("weir manpage"));
    }

    #[test]
    fn roff_escapes_leading_dots() {
        assert_eq!(roff_escape(".x-y"), "\\&.x\\-y");
    }
}
