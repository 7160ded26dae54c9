//! Checkpoint files are created `0600` and the directory `0700` whatever the process's umask
//! (docs/reliability.md §3.2, the permission part of test 25): under umask `000` a plain
//! `open(0600)` would be fine but a directory created with a default mode would be
//! world-writable; under umask `0277` the creation modes themselves lose bits (0400 / 0500) and
//! only the explicit `fchmod` / `chmod` restores them. The umask is process-wide, so this file
//! holds a single test (its own process) and restores the umask before asserting.

mod common;

use std::os::unix::fs::PermissionsExt;

use pinwheel_engine::checkpoint::{
    CheckpointDir, CheckpointKind, WriteOptions, manifest_name, shard_file_name,
};

fn set_umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask only swaps the process's file-creation mask; no memory is involved. This
    // test binary runs this one test, so no other thread creates files meanwhile.
    unsafe { libc::umask(mask) }
}

#[test]
fn fs_permissions_under_any_umask() {
    let mut results = Vec::new();
    for mask in [0o000, 0o277, 0o022] {
        let path = common::fresh_path(&format!("umask-{mask:o}"));
        let previous = set_umask(mask);
        let outcome = CheckpointDir::open_or_create(&path).and_then(|dir| {
            write_checkpoint_for(&dir)?;
            Ok(dir)
        });
        set_umask(previous);
        let dir = outcome.unwrap();
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        results.push((
            mask,
            mode(dir.path()),
            mode(&dir.path().join(shard_file_name(1, 0))),
            mode(&dir.path().join(manifest_name(1))),
        ));
    }
    for (mask, dir_mode, file_mode, manifest_mode) in results {
        assert_eq!(dir_mode, 0o700, "umask {mask:o}: directory");
        assert_eq!(file_mode, 0o600, "umask {mask:o}: shard file");
        assert_eq!(manifest_mode, 0o600, "umask {mask:o}: manifest");
    }
}

fn write_checkpoint_for(
    dir: &CheckpointDir,
) -> Result<(), pinwheel_engine::checkpoint::CheckpointError> {
    common::write_checkpoint(dir, 1, 1, CheckpointKind::Checkpoint, &WriteOptions::default())
        .map(|_| ())
}
