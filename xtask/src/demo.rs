//! `cargo xtask demo`: one agent on embedded defaults running examples/.

use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("demo: not wired yet")
}
