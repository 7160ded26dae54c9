//! The checkpoint directory (docs/reliability.md §1.2, §1.6, §3.2; parts of tests 13 and 25):
//!
//! * `symlinks_refused`: a symlinked checkpoint directory, and a symlinked shard file, are
//!   refused with `Symlink` (never followed: a link could point the engine at another user's
//!   files).
//! * `insecure_directory_refused`: a world-writable or group-writable directory, and (when the
//!   tests run as root, which can hand a directory to another user) one owned by another user,
//!   are refused with `InsecureDirectory`; a path that is a regular file with `NotA`.
//! * `tmp_leftovers_ignored_and_removed`: `.tmp` files of crashed attempts are never listed as
//!   checkpoints, raise `next_attempt`, and `remove_leftover_tmp` deletes exactly them.
//! * `gc_keeps_newest_r_and_never_deletes_savepoints`: retention below 2 is refused; GC keeps the
//!   newest R complete checkpoints and everything newer, keeps savepoints and invalid manifests,
//!   deletes older manifests with their files and orphaned files, leaves an incomplete newer
//!   checkpoint alone, and deletes nothing while fewer than R are complete.
//! * `fallback_policy_strict_and_previous` (test 13, file level): a corrupt newest manifest, a
//!   corrupt block in a shard file of the next one, a missing file of the oldest: `Strict`
//!   returns the newest checkpoint's typed error, `FallbackToPrevious` walks back to the newest
//!   checkpoint that validates completely and reports each skipped one with its reason, and
//!   `NoValidCheckpoint` when none is left; an empty directory has no checkpoint.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{fresh_dir, fresh_path, write_checkpoint};
use pinwheel_engine::checkpoint::{
    CheckpointDir, CheckpointError, CheckpointKind, CorruptKind, IoOp, RestorePolicy, WriteOptions,
    manifest_name, manifest_tmp_name, read_shard_file, shard_file_name, shard_tmp_name,
};

#[test]
fn symlinks_refused() {
    let dir = fresh_dir("symlink-target");
    let link = fresh_path("symlink");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    assert!(
        matches!(CheckpointDir::open_or_create(&link), Err(CheckpointError::Symlink { path }) if path == link)
    );

    write_checkpoint(&dir, 1, 1, CheckpointKind::Checkpoint, &WriteOptions::default()).unwrap();
    let file_link = dir.path().join("link.dat");
    std::os::unix::fs::symlink(dir.path().join(shard_file_name(1, 0)), &file_link).unwrap();
    assert!(matches!(
        read_shard_file(&file_link, None, u64::MAX),
        Err(CheckpointError::Symlink { path }) if path == file_link
    ));
    assert!(read_shard_file(&dir.path().join(shard_file_name(1, 0)), None, u64::MAX).is_ok());
}

#[test]
fn insecure_directory_refused() {
    for mode in [0o777, 0o770, 0o722, 0o702] {
        let path = fresh_path("insecure");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        match CheckpointDir::open_or_create(&path) {
            Err(CheckpointError::InsecureDirectory { mode: m, .. }) => assert_eq!(m, mode),
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
    // Readable by others but writable only by its owner: allowed.
    let path = fresh_path("readable");
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    CheckpointDir::open_or_create(&path).unwrap();

    let file = fresh_path("a-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        CheckpointDir::open_or_create(&file),
        Err(CheckpointError::NotA { expected: "directory", .. })
    ));

    // Owned by another user: only root can set that up.
    let path = fresh_path("foreign");
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    if std::os::unix::fs::chown(&path, Some(54_321), None).is_ok() {
        assert!(matches!(
            CheckpointDir::open_or_create(&path),
            Err(CheckpointError::InsecureDirectory { owner: 54_321, .. })
        ));
    }
}

#[test]
fn tmp_leftovers_ignored_and_removed() {
    let dir = fresh_dir("leftovers");
    write_checkpoint(&dir, 1, 1, CheckpointKind::Checkpoint, &WriteOptions::default()).unwrap();
    let leftovers = [shard_tmp_name(2, 0, 0), shard_tmp_name(2, 0, 4), manifest_tmp_name(2)];
    for name in &leftovers {
        std::fs::write(dir.path().join(name), b"half-written").unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();

    let candidates = dir.candidates().unwrap();
    assert_eq!(candidates.iter().map(|c| c.checkpoint).collect::<Vec<_>>(), [1]);
    let restored = dir.newest_complete(RestorePolicy::Strict).unwrap().unwrap();
    assert_eq!(restored.manifest.checkpoint, 1);
    assert_eq!(dir.next_attempt(2, 0).unwrap(), 5);
    assert_eq!(dir.next_attempt(2, 1).unwrap(), 0);
    assert_eq!(dir.next_attempt(3, 0).unwrap(), 0);

    let mut removed: Vec<String> = dir
        .remove_leftover_tmp()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    let mut expected = leftovers.to_vec();
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(dir.next_attempt(2, 0).unwrap(), 0);
    let names = common::file_names(&dir);
    assert!(names.contains(&"notes.txt".to_string()));
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(dir.newest_complete(RestorePolicy::Strict).unwrap().unwrap().manifest.checkpoint, 1);
}

#[test]
fn gc_keeps_newest_r_and_never_deletes_savepoints() {
    let dir = fresh_dir("gc");
    let options = WriteOptions::default();
    assert!(matches!(dir.gc(1), Err(CheckpointError::InvalidArgument(_))));
    assert!(matches!(dir.gc(0), Err(CheckpointError::InvalidArgument(_))));

    // One complete checkpoint: nothing may be deleted.
    write_checkpoint(&dir, 1, 2, CheckpointKind::Checkpoint, &options).unwrap();
    let report = dir.gc(2).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.kept, [1]);

    for c in 2..=6 {
        let kind = if c == 3 { CheckpointKind::Savepoint } else { CheckpointKind::Checkpoint };
        write_checkpoint(&dir, c, 2, kind, &options).unwrap();
    }
    // An orphan shard file of checkpoint 0 (no manifest), an invalid manifest of checkpoint 2
    // (kept for inspection, with its files), and an incomplete checkpoint 7 (no manifest yet).
    std::fs::write(dir.path().join(shard_file_name(0, 0)), b"orphan").unwrap();
    let m2 = dir.path().join(manifest_name(2));
    let mut bytes = std::fs::read(&m2).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&m2, bytes).unwrap();
    std::fs::copy(dir.path().join(shard_file_name(6, 0)), dir.path().join(shard_file_name(7, 0)))
        .unwrap();

    let report = dir.gc(2).unwrap();
    assert_eq!(report.kept, [6, 5]);
    assert_eq!(report.invalid.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [2]);
    let mut removed: Vec<String> = report
        .removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    let mut expected = vec![
        manifest_name(1),
        manifest_name(4),
        shard_file_name(0, 0),
        shard_file_name(1, 0),
        shard_file_name(1, 1),
        shard_file_name(4, 0),
        shard_file_name(4, 1),
    ];
    expected.sort();
    assert_eq!(removed, expected);

    let names = common::file_names(&dir);
    for kept in [
        manifest_name(2),
        shard_file_name(2, 0),
        manifest_name(3),
        shard_file_name(3, 0),
        shard_file_name(3, 1),
        manifest_name(5),
        manifest_name(6),
        shard_file_name(7, 0),
    ] {
        assert!(names.contains(&kept), "{kept} deleted: {names:?}");
    }
    // Every checkpoint that remains valid still restores completely.
    for c in dir.candidates().unwrap() {
        if c.checkpoint == 2 {
            assert!(c.manifest.is_err());
            continue;
        }
        dir.validate_checkpoint(&c.manifest.unwrap()).unwrap();
    }
    // A second run has nothing left to do.
    assert!(dir.gc(2).unwrap().removed.is_empty());
    // With R = 3, checkpoint 5 and 6 are not enough to delete anything more.
    assert!(dir.gc(3).unwrap().removed.is_empty());
}

#[test]
fn fallback_policy_strict_and_previous() {
    let dir = fresh_dir("fallback");
    assert!(dir.newest_complete(RestorePolicy::Strict).unwrap().is_none());
    assert!(dir.newest_complete(RestorePolicy::FallbackToPrevious).unwrap().is_none());
    assert_eq!(RestorePolicy::default(), RestorePolicy::Strict);
    let options = WriteOptions::default();
    for c in 1..=3 {
        write_checkpoint(&dir, c, 2, CheckpointKind::Checkpoint, &options).unwrap();
    }
    assert_eq!(dir.newest_complete(RestorePolicy::Strict).unwrap().unwrap().manifest.checkpoint, 3);

    // The newest manifest is corrupt.
    let m3 = dir.path().join(manifest_name(3));
    let mut bytes = std::fs::read(&m3).unwrap();
    bytes[30] ^= 0x40;
    std::fs::write(&m3, bytes).unwrap();
    match dir.newest_complete(RestorePolicy::Strict) {
        Err(CheckpointError::Corrupt { file, kind: CorruptKind::ManifestCrc, .. }) => {
            assert_eq!(file, m3)
        }
        other => panic!("{other:?}"),
    }
    let restored = dir.newest_complete(RestorePolicy::FallbackToPrevious).unwrap().unwrap();
    assert_eq!(restored.manifest.checkpoint, 2);
    assert_eq!(restored.files.len(), 2);
    assert_eq!(restored.files[1].sections, common::sections_for(2, 1));
    assert_eq!(restored.skipped.len(), 1);
    assert_eq!(restored.skipped[0].0, 3);
    assert_eq!(restored.skipped[0].1.corrupt_kind(), Some(CorruptKind::ManifestCrc));

    // A block of checkpoint 2's shard 1 is corrupt too: walk back to 1.
    let f21 = dir.path().join(shard_file_name(2, 1));
    let mut bytes = std::fs::read(&f21).unwrap();
    bytes[500] ^= 0x01;
    std::fs::write(&f21, bytes).unwrap();
    let restored = dir.newest_complete(RestorePolicy::FallbackToPrevious).unwrap().unwrap();
    assert_eq!(restored.manifest.checkpoint, 1);
    assert_eq!(restored.skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [3, 2]);
    match &restored.skipped[1].1 {
        CheckpointError::Corrupt { file, kind: CorruptKind::BlockCrc, offset } => {
            assert_eq!(file, &f21);
            assert!(*offset <= 500, "offset {offset}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        dir.newest_complete(RestorePolicy::Strict).unwrap_err().corrupt_kind(),
        Some(CorruptKind::ManifestCrc)
    );

    // Checkpoint 1 loses a file: nothing is left.
    std::fs::remove_file(dir.path().join(shard_file_name(1, 0))).unwrap();
    match dir.newest_complete(RestorePolicy::FallbackToPrevious) {
        Err(CheckpointError::NoValidCheckpoint { skipped, .. }) => {
            assert_eq!(skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [3, 2, 1]);
            assert!(matches!(*skipped[2].1, CheckpointError::Io { op: IoOp::Open, .. }));
        }
        other => panic!("{other:?}"),
    }
}
