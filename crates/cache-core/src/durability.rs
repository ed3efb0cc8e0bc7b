//! One vocabulary for when a disk tier syncs acknowledged writes to stable storage.

use std::time::Duration;

/// The shortest [`Durability::Periodic`] interval a tier accepts: a shorter one would keep its
/// syncer thread busy without making writes meaningfully safer.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_micros(100);

/// When a disk tier syncs acknowledged writes to stable storage: the same three levels for
/// every disk tier of this workspace (the NVMe tier, the RocksDB tier). Each tier has its own
/// default and documents what a put hands over before it returns, and so what a crash of the
/// process may lose.
///
/// Whatever the level, a completed [`Tier::flush`](crate::Tier::flush) is a barrier: every
/// write acknowledged before it survives power loss. The levels differ in what an OS crash or a
/// power loss may lose of the writes acknowledged since the last barrier: all of them (`None`),
/// those of the last interval (`Periodic`), none (`EveryWrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing is synced until a flush: the OS writes back when it likes. The fastest writes,
    /// for a cache that refills itself.
    None,
    /// A background thread syncs at this interval (group commit): a put never waits for a
    /// sync.
    Periodic(Duration),
    /// Every put is synced before it returns; concurrent puts may share one sync (group
    /// commit), but a lone writer is held to about one put per sync latency.
    EveryWrite,
}

impl Durability {
    /// Why a tier refuses this level, if it does: a [`Durability::Periodic`] interval shorter
    /// than [`MIN_SYNC_INTERVAL`]. The tiers' builders return it as an `Invalid` error.
    pub fn invalid_reason(self) -> Option<String> {
        match self {
            Durability::Periodic(every) if every < MIN_SYNC_INTERVAL => Some(format!(
                "a periodic sync every {every:?} is below the minimum of {MIN_SYNC_INTERVAL:?} \
                 (use Durability::EveryWrite to sync each write)"
            )),
            _ => None,
        }
    }
}
