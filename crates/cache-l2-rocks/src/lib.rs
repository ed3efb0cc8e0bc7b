//! A local-disk tier on RocksDB (issue: RocksDB tier). Not implemented yet.
