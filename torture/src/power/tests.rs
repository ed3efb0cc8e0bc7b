//! The journal replay and the power-cut rebuild on hand-made journals.

use std::path::Path;

use cache_l2_nvme::io_trace::Event as E;
use rand::{SeedableRng, rngs::StdRng};

use super::{Cut, Damage, Files, Replay, replay};

fn p(name: &str) -> std::path::PathBuf {
    Path::new("d").join(name)
}

fn write(name: &str, offset: u64, byte: u8, len: usize) -> E {
    E::Write { path: p(name), offset, data: vec![byte; len] }
}

fn sync(name: &str) -> [E; 2] {
    [E::SyncBegin { path: p(name) }, E::SyncEnd { path: p(name) }]
}

fn dir_sync() -> [E; 2] {
    [E::DirSyncBegin { dir: "d".into() }, E::DirSyncEnd { dir: "d".into() }]
}

fn run(baseline: &Files, events: Vec<E>) -> Replay {
    replay(baseline, events, Path::new("d")).unwrap()
}

fn cut(r: &Replay, seed: u64, damage: Damage) -> Files {
    r.rebuild(Some((&mut StdRng::seed_from_u64(seed), damage)), &mut Cut::default())
}

#[test]
fn a_synced_write_survives_and_a_later_one_is_reverted() {
    let mut events =
        vec![E::Create { path: p("a"), truncate: false }, E::Alloc { path: p("a"), len: 1024 }];
    events.push(write("a", 0, 1, 100));
    events.extend(sync("a"));
    events.extend(dir_sync());
    events.push(write("a", 100, 2, 100));
    let r = run(&Files::new(), events);
    for seed in 0..20 {
        let files = cut(&r, seed, Damage::Reverted);
        let a = &files["a"];
        assert_eq!(a.len(), 1024, "the allocation was synced");
        assert!(a[..100].iter().all(|b| *b == 1));
        assert!(a[100..].iter().all(|b| *b == 0), "the unsynced write is reverted to zeros");
    }
    let all = r.everything();
    assert!(all["a"][100..200].iter().all(|b| *b == 2));
}

#[test]
fn a_sync_that_did_not_return_or_started_before_the_write_covers_nothing() {
    let events = vec![
        E::Create { path: p("a"), truncate: false },
        E::SyncBegin { path: p("a") },
        write("a", 0, 7, 10),
        E::SyncEnd { path: p("a") },
        write("a", 10, 8, 10),
        E::SyncBegin { path: p("a") },
    ];
    let r = run(&Files::new(), events);
    let mut seen_len = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let files = cut(&r, seed, Damage::Reverted);
        if let Some(a) = files.get("a") {
            assert!(a.iter().all(|b| *b == 0), "nothing of it was synced: {a:?}");
            seen_len.insert(a.len());
        }
    }
    assert_eq!(seen_len.into_iter().collect::<Vec<_>>(), vec![0, 20], "both lengths are tried");
}

#[test]
fn torn_and_reordered_cuts_touch_only_unsynced_sectors() {
    let mut events =
        vec![E::Create { path: p("a"), truncate: false }, E::Alloc { path: p("a"), len: 8192 }];
    events.push(write("a", 0, 1, 700));
    events.extend(sync("a"));
    events.extend(dir_sync());
    events.push(write("a", 700, 2, 4000));
    let r = run(&Files::new(), events);
    let (mut random, mut kept) = (false, false);
    for seed in 0..20 {
        for damage in [Damage::Torn, Damage::Reordered] {
            let a = &cut(&r, seed, damage)["a"];
            assert!(a[..700].iter().all(|b| *b == 1), "synced bytes are never damaged");
            assert!(a[4700..].iter().all(|b| *b == 0), "bytes never written stay zero");
            random |= a[700..4700].iter().any(|b| *b != 0 && *b != 2);
            kept |= damage == Damage::Reordered && a[1024..1536].iter().all(|b| *b == 2);
            if damage == Damage::Torn {
                for sector in a[1024..4608].chunks(512) {
                    assert!(sector.iter().any(|b| *b != 2), "a torn cut writes nothing back");
                }
            }
        }
    }
    assert!(random && kept, "random sectors: {random}, written-back sectors: {kept}");
}

#[test]
fn name_operations_after_the_last_directory_sync_may_or_may_not_have_happened() {
    let baseline: Files = [("index.snap".to_owned(), vec![9; 64])].into();
    let mut events = vec![E::Unlink { path: p("index.snap") }];
    events.push(E::Create { path: p("x.tmp"), truncate: true });
    events.push(write("x.tmp", 0, 3, 16));
    events.extend(sync("x.tmp"));
    events.push(E::Rename { from: p("x.tmp"), to: p("x") });
    let r = run(&baseline, events);
    let mut states = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let files = cut(&r, seed, Damage::Reverted);
        if let Some(snap) = files.get("index.snap") {
            assert_eq!(snap, &vec![9; 64], "an unlink that did not happen leaves the old file");
        }
        if let Some(x) = files.get("x").or(files.get("x.tmp")) {
            assert_eq!(x, &vec![3; 16], "the file's own sync made its bytes durable");
        }
        states.insert(files.keys().cloned().collect::<Vec<_>>());
    }
    // A prefix: the unlink alone, the unlink and the creation, all three, or none.
    let expected: std::collections::BTreeSet<Vec<String>> =
        [vec!["index.snap".to_owned()], vec![], vec!["x.tmp".to_owned()], vec!["x".to_owned()]]
            .into();
    assert_eq!(states, expected);
    assert_eq!(r.everything().keys().collect::<Vec<_>>(), ["x"]);
}

#[test]
fn the_replay_explains_only_the_last_write() {
    let events = vec![
        E::Create { path: p("a"), truncate: false },
        write("a", 0, 1, 10),
        write("a", 10, 2, 10),
    ];
    let r = run(&Files::new(), events);
    let all = r.everything();
    let replayed = all.get("a");
    let mut half = all["a"].clone();
    half[15..].fill(0);
    assert!(r.explains("a", Some(&half), replayed), "the last write may be partial");
    assert!(r.explains("a", Some(&all["a"][..10].to_vec()), replayed), "or not have run");
    let mut earlier = all["a"].clone();
    earlier[3] = 0;
    assert!(!r.explains("a", Some(&earlier), replayed), "an earlier write must be there");
    assert!(!r.explains("b", Some(&vec![0]), None), "a file the journal never named");
}

#[test]
fn a_round_is_durable_by_the_periodic_sync_only_after_a_pass_that_started_after_its_mark() {
    let events = vec![
        E::PassBegin,
        E::Mark("written 1".into()),
        E::PassEnd,
        E::Mark("written 2".into()),
        E::PassBegin,
        E::PassEnd,
        E::Mark("written 3".into()),
        E::PassBegin,
    ];
    assert_eq!(run(&Files::new(), events).periodic_durable, vec![2]);
}
