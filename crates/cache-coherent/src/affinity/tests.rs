//! Unit tests of [`Affinity`].

use std::collections::HashMap;

use cache_core::Key;

use super::Affinity;

fn keys(n: usize) -> Vec<Key> {
    (0..n).map(|i| Key::new("affinity", format!("key-{i}")).unwrap()).collect()
}

#[test]
fn owners_are_stable_and_spread_evenly() {
    let members = Affinity::new((0..4).map(|i| format!("node-{i}")));
    let again = Affinity::new((0..4).rev().map(|i| format!("node-{i}")));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let keys = keys(4_000);
    for key in &keys {
        let owner = members.owner(key).unwrap();
        assert_eq!(again.owner(key), Some(owner), "the order of the list does not matter");
        *counts.entry(owner).or_default() += 1;
    }
    assert_eq!(counts.len(), 4);
    for (member, n) in counts {
        assert!((800..=1_200).contains(&n), "{member} owns {n} of 4,000 keys");
    }
    // A pinned owner: the scores do not depend on the process, the build or the platform's
    // hasher, so routers built apart agree.
    let key = Key::new("affinity", "pinned").unwrap();
    assert_eq!(members.owners(&key, 4), ["node-0", "node-1", "node-2", "node-3"]);
    let key = Key::new("affinity", "pinned too").unwrap();
    assert_eq!(members.owners(&key, 4), ["node-0", "node-3", "node-2", "node-1"]);
}

#[test]
fn a_member_leaving_moves_only_its_keys_to_the_runner_up() {
    let all = Affinity::new(["a", "b", "c", "d", "e"]);
    let mut without_c = all.clone();
    assert!(without_c.remove("c"));
    assert!(!without_c.remove("c"));
    for key in keys(2_000) {
        let ranked = all.owners(&key, 2);
        let now = without_c.owner(&key).unwrap();
        if ranked[0] == "c" {
            assert_eq!(now, ranked[1], "c's keys go to their runner-up");
        } else {
            assert_eq!(now, ranked[0], "keys c did not own stay put");
        }
    }
    let mut grown = all.clone();
    assert!(grown.insert("f"));
    assert!(!grown.insert("f"));
    let moved = keys(2_000).iter().filter(|k| grown.owner(k) != all.owner(k)).count();
    assert!(moved.abs_diff(2_000 / 6) < 120, "{moved} of 2,000 keys moved to the new member");
    for key in keys(200) {
        if grown.owner(&key) != all.owner(&key) {
            assert_eq!(grown.owner(&key), Some("f"), "keys move only to the new member");
        }
    }
}

#[test]
fn empty_lists_and_short_rankings() {
    let empty = Affinity::new(Vec::<String>::new());
    let key = Key::new("affinity", "k").unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.owner(&key), None);
    assert!(empty.owners(&key, 3).is_empty());
    let two = Affinity::new(["x", "y", "x"]);
    assert_eq!(two.len(), 2);
    let ranked = two.owners(&key, 5);
    assert_eq!(ranked.len(), 2);
    assert_ne!(ranked[0], ranked[1]);
    let mut names: Vec<&str> = two.members().collect();
    names.sort_unstable();
    assert_eq!(names, ["x", "y"]);
}
