//! Unit tests of the soak's checks: a steady run passes, and each kind of leak or drift,
//! injected into the samples (or into this process, for the `/proc` readers), fails its check.

use std::time::Duration;

use super::*;

/// A steady two-minute run: 12 samples, small jitter, nothing growing.
fn steady() -> Vec<Sample> {
    (1..=12u64)
        .map(|i| Sample {
            at: Duration::from_secs(10 * i),
            rss: (200 << 20) + (i % 3) * (1 << 20),
            rss_anon: 120 << 20,
            fds: 40 + i % 2,
            sockets: 8,
            threads: 12,
            disk: NVME_BYTES - (1 << 20),
            over_budget: false,
            object_bytes: OBJECT_BYTES / 2,
            ops: 40_000,
            p50_us: 300,
            p99_us: 4_000 + (i % 4) * 300,
            max_us: 30_000,
        })
        .collect()
}

fn limits() -> Limits {
    Limits::for_run(Duration::from_secs(120))
}

fn failed(samples: &[Sample]) -> Vec<&'static str> {
    verdict(samples, &limits()).into_iter().filter(|c| !c.ok).map(|c| c.what).collect()
}

#[test]
fn the_ci_form_warms_up_for_30_s_and_the_full_form_for_5_minutes() {
    assert_eq!(warmup(Duration::from_secs(120)), Duration::from_secs(30));
    assert_eq!(warmup(Duration::from_secs(3600)), Duration::from_secs(300));
    assert_eq!(warmup(Duration::from_secs(600)), Duration::from_secs(150));
}

#[test]
fn a_steady_run_passes() {
    let checks = verdict(&steady(), &limits());
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    assert_eq!(checks.len(), 7);
}

#[test]
fn a_memory_leak_fails() {
    // 8 MiB more per sample after the warm-up: +72 MiB over 200 MiB by the end (36 %), over
    // the 25 % a 2-minute run allows.
    let mut s = steady();
    for (n, smp) in s.iter_mut().enumerate().skip(3) {
        smp.rss += (n as u64 - 2) * (8 << 20);
    }
    assert_eq!(failed(&s), ["resident memory after the warm-up"]);
    // 3 MiB per sample (+13.5 %) passes a 2-minute run but fails an hour's 10 %.
    let mut s = steady();
    for (n, smp) in s.iter_mut().enumerate().skip(3) {
        smp.rss += (n as u64 - 2) * (3 << 20);
    }
    assert!(failed(&s).is_empty());
    let hour = Limits { rss_growth: rss_growth(Duration::from_secs(3600)), ..limits() };
    let failed_hour: Vec<_> =
        verdict(&s, &hour).into_iter().filter(|c| !c.ok).map(|c| c.what).collect();
    assert_eq!(failed_hour, ["resident memory after the warm-up"]);
    // Growth during the warm-up alone is the stack filling up: not a failure.
    let mut s = steady();
    for (n, smp) in s.iter_mut().enumerate().take(3) {
        smp.rss -= (3 - n as u64) * (40 << 20);
    }
    assert!(failed(&s).is_empty());
}

#[test]
fn a_descriptor_leak_fails() {
    let mut s = steady();
    for (n, smp) in s.iter_mut().enumerate() {
        smp.fds += n as u64; // one more per sample
    }
    assert_eq!(failed(&s), ["open file descriptors (not sockets)"]);
    // One burst in the middle is not growth.
    let mut s = steady();
    s[7].fds += 60;
    assert!(failed(&s).is_empty());
}

#[test]
fn pooled_connections_may_stay_but_a_socket_leak_fails() {
    // A stall of the server late in the run: new connections stay pooled to the end.
    let mut s = steady();
    for smp in s.iter_mut().skip(9) {
        smp.sockets += 13;
    }
    assert!(failed(&s).is_empty(), "{:?}", failed(&s));
    let mut s = steady();
    for (n, smp) in s.iter_mut().enumerate() {
        smp.sockets += 16 * n as u64; // sixteen more per sample: past any pool by the end
    }
    assert_eq!(failed(&s), ["open sockets (pooled connections)"]);
}

#[test]
fn a_thread_leak_fails() {
    let mut s = steady();
    for smp in s.iter_mut().skip(8) {
        smp.threads += 3;
    }
    assert_eq!(failed(&s), ["threads"]);
}

#[test]
fn a_disk_tier_past_its_budget_fails() {
    let mut s = steady();
    s[1].disk = NVME_BYTES + DISK_SLACK + 1; // during the warm-up too
    assert_eq!(failed(&s), ["NVMe directory on disk (whole run)"]);
    let mut s = steady();
    s[10].over_budget = true;
    assert_eq!(failed(&s), ["tier usage within each tier's budget (whole run)"]);
}

#[test]
fn a_p99_drift_fails_but_one_slow_interval_does_not() {
    let mut s = steady();
    for smp in s.iter_mut().skip(9) {
        smp.p99_us = 9_500; // over twice the ~4.3 ms baseline
    }
    assert_eq!(failed(&s), ["p99 latency drift"]);
    let mut s = steady();
    s[8].p99_us = 80_000;
    assert!(failed(&s).is_empty());
}

#[test]
fn too_short_a_run_fails() {
    let s = steady();
    let checks = verdict(&s[..6], &limits());
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok);
}

/// The readers see a leak injected into this process: memory, descriptors and a thread.
#[test]
fn proc_readers_see_an_injected_leak() {
    let (rss0, _, threads0) = proc_status().unwrap();
    let (fds0, _) = fd_counts().unwrap();
    assert_eq!(proc_entries("/proc/self/task").unwrap(), threads0);
    let mut leak = vec![1u8; 64 << 20];
    for b in leak.iter_mut().step_by(4096) {
        *b = 2; // touch every page
    }
    let files: Vec<std::fs::File> =
        (0..20).map(|_| std::fs::File::open("/proc/self/status").unwrap()).collect();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || rx.recv());
    let (rss1, _, threads1) = proc_status().unwrap();
    let (fds1, _) = fd_counts().unwrap();
    assert!(rss1 >= rss0 + (60 << 20), "rss {rss0} -> {rss1}");
    assert!(fds1 >= fds0 + 20, "fds {fds0} -> {fds1}");
    assert!(threads1 > threads0, "threads {threads0} -> {threads1}");
    // Fed to the verdict as a run whose last samples carry the leak, it fails all three.
    let mut s = steady();
    for smp in &mut s {
        (smp.rss, smp.fds, smp.threads) = (rss0, fds0, threads0);
    }
    for smp in s.iter_mut().skip(9) {
        (smp.rss, smp.fds, smp.threads) = (rss1, fds1, threads1 + 2);
    }
    let failed = failed(&s);
    assert!(failed.contains(&"resident memory after the warm-up"), "{failed:?}");
    assert!(failed.contains(&"open file descriptors (not sockets)"), "{failed:?}");
    assert!(failed.contains(&"threads"), "{failed:?}");
    drop((tx, files));
    let _ = thread.join();
    std::hint::black_box(&leak);
}

#[test]
fn the_plot_is_an_svg_with_every_panel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soak.svg");
    plot(&path, &steady(), &limits()).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    for title in ["resident memory", "open file descriptors", "threads", "NVMe directory", "p99"] {
        assert!(svg.contains(title), "no panel {title}");
    }
}

#[test]
fn disk_bytes_count_allocated_blocks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), vec![7u8; 100_000]).unwrap();
    let n = dir_disk_bytes(dir.path());
    assert!((100_000..200_000).contains(&n), "{n}");
}
