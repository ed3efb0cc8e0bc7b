//! An object-storage tier on object_store (issue: object-storage tier). Not implemented yet.
