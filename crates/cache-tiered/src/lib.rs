//! The composition of tiers: read-through, promotion, demotion and write policies (issue: tiered composition). Not implemented yet.
