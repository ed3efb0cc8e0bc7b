//! The full disk campaign (see `RELIABILITY.md`). Not written yet.

use anyhow::Result;

use crate::{Ctx, report::Section};

/// Runs the campaign.
pub(crate) fn run(_ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new("full disk", "not implemented yet");
    s.check(false, "campaign not implemented");
    Ok(s)
}
