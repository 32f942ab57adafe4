//! `hush generate-assets --out DIR` (hidden; used by packaging/build-debs): man pages and
//! shell completions generated from the clap definitions of every binary the Debian packages
//! ship — `hush` itself and the three servers (their `Cli` types are public in their
//! libraries) — so that the pages never drift from the `--help` text.
//!
//! Layout written under DIR:
//! * `man/<bin>.1` and `man/<bin>-<subcommand>.1` (one page per visible subcommand);
//! * `completions/bash/<bin>`, `completions/zsh/_<bin>`, `completions/fish/<bin>.fish`.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

/// The clap command of every packaged binary, `hush`'s own first.
pub fn commands(hush: clap::Command) -> Vec<clap::Command> {
    vec![
        hush,
        smp_server::cli::Cli::command(),
        ntf_server::cli::Cli::command(),
        push_server::cli::Cli::command(),
    ]
}

/// Writes the man pages and completions of `commands` under `out`; returns the files written.
pub fn write(out: &Path, commands: Vec<clap::Command>) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let man = out.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let mut written = Vec::new();
    for cmd in commands {
        let name = cmd.get_name().to_string();
        clap_mangen::generate_to(cmd.clone(), &man)
            .with_context(|| format!("man pages of {name}"))?;
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let dir = out.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut completion_command(&cmd), &name, &mut text);
            let path = dir.join(file);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    let mut pages: Vec<_> = std::fs::read_dir(&man)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    written.extend(pages);
    Ok(written)
}

/// `cmd` without its hidden subcommands (such as `hush generate-assets`), for the completion
/// scripts: clap_complete offers hidden subcommands too, clap_mangen leaves them out already.
/// clap cannot remove a subcommand, so the command is rebuilt from its name, version, arguments
/// and visible subcommands (what the completion scripts are made of).
pub fn completion_command(cmd: &clap::Command) -> clap::Command {
    if !cmd.get_subcommands().any(|s| s.is_hide_set()) {
        return cmd.clone();
    }
    // clap's names are `&'static str` without its `string` feature: one small leak per binary
    // in a command that exits right after
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let mut c = clap::Command::new(leak(cmd.get_name()));
    if let Some(v) = cmd.get_version() {
        c = c.version(leak(v));
    }
    for a in cmd.get_arguments() {
        c = c.arg(a.clone());
    }
    for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        c = c.subcommand(s.clone());
    }
    c
}

/// The hidden subcommand: writes everything and prints one line per file.
pub fn run(out: &Path, hush: clap::Command) -> anyhow::Result<()> {
    for path in write(out, commands(hush))? {
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hush() -> clap::Command {
        <crate::Cli as CommandFactory>::command()
    }

    #[test]
    fn pages_and_completions_for_every_binary_and_visible_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), commands(hush())).unwrap();
        let man = dir.path().join("man");
        for (bin, subs) in [
            ("hush", &["up", "init", "daemon", "group", "group-send"][..]),
            (
                "smp-server",
                &["init", "start", "cert", "delete", "import"][..],
            ),
            ("ntf-server", &["init", "start", "delete", "import"][..]),
            ("push-server", &["init", "start"][..]),
        ] {
            let page = std::fs::read_to_string(man.join(format!("{bin}.1"))).unwrap();
            assert!(page.contains(&format!(".TH {bin} 1")), "{bin}: {page}");
            for sub in subs {
                let p = man.join(format!("{bin}-{sub}.1"));
                assert!(written.contains(&p), "{} not written", p.display());
            }
            let bash = std::fs::read_to_string(dir.path().join("completions/bash").join(bin));
            let bash = bash.unwrap();
            assert!(
                bash.contains(&format!("complete -F _{}", bin.replace('-', "__"))),
                "{bash}"
            );
            for sub in subs.iter().filter(|s| !s.contains('-')) {
                assert!(bash.contains(sub), "{bin} bash completion lacks {sub}");
            }
            let zsh = dir.path().join("completions/zsh").join(format!("_{bin}"));
            assert!(
                std::fs::read_to_string(zsh)
                    .unwrap()
                    .starts_with(&format!("#compdef {bin}"))
            );
            let fish = dir
                .path()
                .join("completions/fish")
                .join(format!("{bin}.fish"));
            assert!(
                std::fs::read_to_string(fish)
                    .unwrap()
                    .contains(&format!("complete -c {bin}"))
            );
        }
        // options are documented on the subcommand's page
        let init = std::fs::read_to_string(man.join("smp-server-init.1")).unwrap();
        assert!(init.contains("fqdn"), "{init}");
        // the hidden packaging subcommand is in neither the pages nor the completions
        assert!(!man.join("hush-generate-assets.1").exists());
        for f in &written {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                !text.contains("generate-assets"),
                "{} mentions it",
                f.display()
            );
        }
    }

    #[test]
    fn completion_command_keeps_global_options_and_drops_hidden_subcommands() {
        let full = hush();
        assert!(full.find_subcommand("generate-assets").is_some());
        let c = completion_command(&full);
        assert!(c.find_subcommand("generate-assets").is_none());
        assert!(c.find_subcommand("daemon").is_some());
        assert_eq!(
            c.get_subcommands().count() + 1,
            full.get_subcommands().count()
        );
        assert!(
            c.get_arguments()
                .any(|a| a.get_long() == Some("socks-proxy"))
        );
        assert_eq!(c.get_version(), full.get_version());
    }
}
