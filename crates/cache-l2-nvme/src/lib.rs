//! A log-structured local-disk tier on memmap2 + rkyv (issue: NVMe tier). Not implemented yet.
