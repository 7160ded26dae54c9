//! Exactly-once output under SIGKILL: the driver's window-sum job with `--checkpoint-dir` and
//! `--output`, killed at pseudo-random moments (at least 200 times in all) and started again
//! with the same command until a run completes, leaves committed output in which every event
//! is counted exactly once: each key's output values sum to exactly what an uninterrupted run's
//! do (the windows may be cut differently, since when a timer fires depends on when the
//! watermark arrives, but every event's value is in exactly one output). Nothing but committed
//! files is left in the output directory.
//!
//! And deterministically: a run that aborts at its k-th checkpoint I/O step (creating, sizing,
//! mapping, syncing, renaming a shard file or a manifest, syncing the directory), for every k
//! until a run has fewer steps, then started again, leaves the same exact output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const EVENTS: &str = "3000000";
const KEYS: &str = "5000";
/// SIGKILLs over all rounds, at least.
const KILLS: usize = 200;
/// SIGKILLs in one round at most, before its last run is let complete.
const KILLS_PER_ROUND: usize = 40;

fn fresh(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("exactly-once-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn driver(out: &Path, checkpoints: Option<&Path>) -> Command {
    driver_with(out, checkpoints, EVENTS)
}

fn driver_with(out: &Path, checkpoints: Option<&Path>, events: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinwheel-bench"));
    c.args(["window-sum", "--events", events, "--keys", KEYS, "--shards", "2", "--no-progress"])
        .arg("--output")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = checkpoints {
        c.args(["--checkpoint-interval-ms", "5"]).arg("--checkpoint-dir").arg(dir);
    }
    c
}

/// Each key's sum of output values, from the committed files; panics on anything else left.
fn sums(out: &Path) -> BTreeMap<u64, u64> {
    let mut sums = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(name.starts_with("part-"), "{name} left in {}", out.display());
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let (key, value) = line.split_once(',').expect("key,value");
            *sums.entry(key.parse().unwrap()).or_insert(0) += value.parse::<u64>().unwrap();
        }
    }
    sums
}

#[test]
fn killed_runs_leave_every_event_counted_exactly_once() {
    let reference_out = fresh("reference");
    assert!(driver(&reference_out, None).status().unwrap().success());
    let reference = sums(&reference_out);
    assert_eq!(reference.len(), 5000, "every key has output");

    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    let mut rounds = 0;
    while kills < KILLS {
        rounds += 1;
        let (dir, out) = (fresh(&format!("ck-{rounds}")), fresh(&format!("out-{rounds}")));
        let mut in_round = 0;
        loop {
            let mut child = driver(&out, Some(&dir)).spawn().unwrap();
            if in_round == KILLS_PER_ROUND {
                assert!(child.wait().unwrap().success(), "round {rounds}: the last run failed");
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::thread::sleep(Duration::from_millis(2 + x % 120));
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "round {rounds}: a run ended on its own with {status:?}");
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            in_round += 1;
            kills += 1;
        }
        let got = sums(&out);
        let wrong: Vec<(u64, u64, u64)> = reference
            .iter()
            .filter(|(k, v)| got.get(k) != Some(v))
            .map(|(&k, &v)| (k, v, got.get(&k).copied().unwrap_or(0)))
            .collect();
        assert!(
            wrong.is_empty() && got.len() == reference.len(),
            "round {rounds}, after {in_round} kills: {} keys wrong, e.g. (key, want, got) {:?}; \
             total {} for {}",
            wrong.len(),
            &wrong[..wrong.len().min(3)],
            got.values().sum::<u64>(),
            reference.values().sum::<u64>()
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("{kills} kills in {rounds} rounds; every round's output exact");
    let _ = std::fs::remove_dir_all(&reference_out);
}

#[test]
fn an_abort_at_every_checkpoint_io_step_recovers_exactly() {
    const SMALL: &str = "600000";
    let reference_out = fresh("steps-reference");
    assert!(driver_with(&reference_out, None, SMALL).status().unwrap().success());
    let reference = sums(&reference_out);
    let mut aborted = 0;
    for k in 1.. {
        let (dir, out) = (fresh(&format!("steps-ck-{k}")), fresh(&format!("steps-out-{k}")));
        let status = driver_with(&out, Some(&dir), SMALL)
            .arg("--checkpoint-abort-at-step")
            .arg(k.to_string())
            .status()
            .unwrap();
        let completed = status.success();
        if !completed {
            aborted += 1;
            // Started again without the fault, the job completes from what the abort left.
            assert!(driver_with(&out, Some(&dir), SMALL).status().unwrap().success(), "step {k}");
        }
        assert_eq!(sums(&out), reference, "abort at checkpoint I/O step {k}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&out);
        if completed {
            // This run had fewer than k steps: every step of a run has been a crash point.
            break;
        }
        assert!(k < 2_000, "a run of {SMALL} events should not take thousands of steps");
    }
    assert!(aborted >= 9, "at least one shard file's steps were crash points: {aborted}");
    eprintln!("{aborted} crash points, each recovered exactly");
    let _ = std::fs::remove_dir_all(&reference_out);
}
