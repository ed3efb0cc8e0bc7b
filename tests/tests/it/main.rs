//! The integration tests: one binary (`it`), one module per scenario, run against a real S3
//! server (SeaweedFS started by `cargo xtask s3 start` / `cargo xtask ci`, or MinIO in GitHub
//! Actions).
//!
//! `harness` finds the server and builds clients (see its docs for the environment variables);
//! every S3 test starts with `s3_test!` or `skip_unless_s3!`, so it skips with a message when no
//! server is configured, and fails instead when `CI` is set.
//!
//! Add a scenario as a new module `<area>_<topic>.rs` here (e.g. `s3_tier_conformance.rs`,
//! `tiered_end_to_end.rs`) and list it below.

mod cached_object_store;
mod harness;
mod l3_object;
mod multi_node;
mod s3_credentials;
mod s3_record;
mod tiered_e2e;
