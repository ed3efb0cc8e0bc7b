//! Benchmarks of the object tier against raw object_store calls (not written yet).

fn main() {}
