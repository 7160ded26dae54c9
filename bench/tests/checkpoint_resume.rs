//! The driver with `--checkpoint-dir`: a run checkpoints and passes its checks; the same command
//! started again resumes from the newest complete checkpoint; and a run killed with SIGKILL at
//! arbitrary moments, started again each time, always finds a directory it can restore (or
//! nothing yet) and completes, and `pinwheel-checkpoint inspect` validates what it left.
//!
//! What the resumed runs emitted is not compared with an uninterrupted run here: without the
//! exactly-once file sink, output after the last checkpoint is emitted again on resume.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn fresh(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn driver(dir: &Path, events: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinwheel-bench"));
    c.args(["count-with-timeout", "--events", &events.to_string(), "--keys", "5000"])
        .args(["--shards", "2", "--no-progress", "--checkpoint-interval-ms", "5"])
        .arg("--checkpoint-dir")
        .arg(dir);
    c
}

/// The value of `key=` in the result line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn run_to_end(dir: &Path, events: u64) -> String {
    let out = driver(dir, events).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn a_run_checkpoints_and_the_same_command_resumes() {
    let dir = fresh("twice");
    let first = run_to_end(&dir, 300_000);
    assert_eq!(field(&first, "check"), Some("ok"), "{first}");
    let completed: u64 = field(&first, "checkpoints").unwrap().parse().unwrap();
    assert!(
        completed >= 1,
        "the source waits for nothing, but 300 K events take longer than 5 ms: {first}"
    );
    assert!(field(&first, "checkpoint_bytes").unwrap().parse::<u64>().unwrap() > 0, "{first}");
    assert!(field(&first, "checkpoint_stall_max_us").is_some(), "{first}");
    assert_eq!(field(&first, "restore_seconds"), None, "nothing to restore: {first}");

    let second = run_to_end(&dir, 300_000);
    assert!(field(&second, "restore_seconds").is_some(), "{second}");
    assert_eq!(field(&second, "check"), Some("skipped_resumed"), "{second}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_runs_restart_until_one_completes() {
    let dir = fresh("killed");
    // Deterministic delays: a kill lands before the first checkpoint, during a snapshot, during a
    // file write, between runs of checkpoints.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut kills = 0;
    for _ in 0..8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(20 + x % 400);
        let mut child =
            driver(&dir, 1_000_000).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                // Finished before the kill: it must have succeeded.
                assert!(status.success(), "a run ended on its own with {status:?}");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    // Whatever the kills left, the next run restores (or starts afresh) and completes.
    let complete = std::fs::read_dir(&dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name().into_string().unwrap();
                name.starts_with("MANIFEST-") && !name.ends_with(".tmp")
            })
            .count()
    });
    eprintln!("{kills} kills; {complete} complete checkpoints left");
    let last = run_to_end(&dir, 1_000_000);
    if kills > 0 && complete > 0 {
        assert!(field(&last, "restore_seconds").is_some(), "a checkpoint was there: {last}");
    }
    let inspect = Command::new(env!("CARGO_BIN_EXE_pinwheel-checkpoint"))
        .arg("inspect")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&inspect.stdout),
        String::from_utf8_lossy(&inspect.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
