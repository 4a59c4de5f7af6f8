//! `cargo xtask bench`: figures side by side with the peers each issue names.

use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("bench: not wired yet")
}
