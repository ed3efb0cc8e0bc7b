//! The crash campaign (see `RELIABILITY.md`). Not written yet.

use anyhow::Result;

use crate::{Ctx, report::Section};

/// Runs the campaign.
pub(crate) fn run(_ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new("crash", "not implemented yet");
    s.check(false, "campaign not implemented");
    Ok(s)
}

/// The child process's entry point (`cache-torture crash-child ARGS...`).
pub(crate) fn child_main(_args: &[String]) -> Result<()> {
    anyhow::bail!("crash-child not implemented")
}
