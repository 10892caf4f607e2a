//! `cargo xtask docs OUT`: man pages p2pd(8) and p2pctl(1) and the bash, zsh and fish
//! completions, generated from the clap definitions (the single source of truth for flags), plus
//! the hand-written p2pd.toml(5) copied beside them.

use anyhow::{bail, Context};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

fn man(cmd: clap::Command, section: &str, out: &Path) -> anyhow::Result<()> {
    let name = cmd.get_name().to_string();
    let page = clap_mangen::Man::new(cmd)
        .section(section)
        .manual("p2pd manual");
    let mut buf = Vec::new();
    page.render(&mut buf)?;
    let path = out.join(format!("{name}.{section}"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))
}

fn completions(mut cmd: clap::Command, out: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    let name = cmd.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, out)
            .with_context(|| format!("{shell} completion for {name}"))?;
    }
    Ok(())
}

fn docs(out: &Path) -> anyhow::Result<()> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    man(p2pd::cli::Cli::command(), "8", &man_dir)?;
    man(p2pctl::cli::Cli::command(), "1", &man_dir)?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("man/p2pd.toml.5"), man_dir.join("p2pd.toml.5"))
        .context("man/p2pd.toml.5")?;
    completions(p2pd::cli::Cli::command(), &comp_dir)?;
    completions(p2pctl::cli::Cli::command(), &comp_dir)?;
    println!(
        "wrote man pages to {} and completions to {}",
        man_dir.display(),
        comp_dir.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["docs", out] => docs(Path::new(out)),
        _ => bail!("usage: cargo xtask docs OUTDIR"),
    }
}
