//! `pinwheel-checkpoint inspect DIR` on a real checkpoint directory: a complete checkpoint is
//! listed with its shards, key groups, sizes and each keyed operator's keys, timers and states
//! (exit 0); after one byte of a shard file is flipped the same checkpoint is reported invalid,
//! naming the file (exit 1); an empty directory has no checkpoint (exit 1).

use std::path::PathBuf;
use std::process::Command;

use pinwheel_engine::checkpoint::{
    CheckpointDir, CheckpointKind, KEYED_SECTION, Manifest, ManifestShard, ShardFileMeta,
    WriteOptions, keyed_section, write_manifest, write_shard_file,
};
use pinwheel_engine::keyed::{BackendSettings, KeyedBackend, KeyedRecord};
use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_engine::state::ValueStateDescriptor;
use pinwheel_engine::time::TimeDomain;

fn fresh(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("inspect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn inspect(dir: &PathBuf) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pinwheel-checkpoint"))
        .arg("inspect")
        .arg(dir)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn inspect_lists_a_complete_checkpoint_and_reports_a_damaged_one() {
    let path = fresh("ckpt");
    let dir = CheckpointDir::open_or_create(&path).unwrap();
    let groups = KeyGroups::new(128).unwrap();
    let mut shards = Vec::new();
    let mut keys_per_shard = Vec::new();
    for shard in 0..2usize {
        let range = groups.range_for_shard(shard, 2).unwrap();
        let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
        let count =
            b.state_registry().value_state(ValueStateDescriptor::<u64>::new("count")).unwrap();
        let mut n = 0;
        for key in (0..100u64).filter(|k| groups.shard_for_key(k, 2) == shard) {
            let r = KeyedRecord::new(key, (), Some(5), &groups);
            b.enter(r.key, r.hash, r.key_group, r.timestamp, |mut cx| {
                count.update(&cx.scope, key).unwrap();
                cx.timers.register(TimeDomain::EventTime, 10).unwrap();
            })
            .unwrap();
            n += 1;
        }
        keys_per_shard.push(n);
        let section = keyed_section("counter", &b.snapshot().unwrap()).unwrap();
        let meta = ShardFileMeta::new(7, shard as u32, 2, range);
        let written =
            write_shard_file(&dir, &meta, &[(KEYED_SECTION, &section)], &WriteOptions::default())
                .unwrap();
        shards.push(ManifestShard::new(shard as u32, range, &written, 5));
    }
    let manifest = Manifest::new(7, CheckpointKind::Checkpoint, 128, shards, vec![], 0).unwrap();
    write_manifest(&dir, &manifest, &WriteOptions::default()).unwrap();

    let (code, out) = inspect(&path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpoint 7 Checkpoint complete: 2 shards, 128 key groups"), "{out}");
    assert!(
        out.contains("shard 0 ckpt-00000000000000000007-s0000.dat: key groups 0..=63"),
        "{out}"
    );
    for n in &keys_per_shard {
        assert!(
            out.contains(&format!("operator counter: {n} keys, {n} timers, states [\"count\"]")),
            "{out}"
        );
    }

    // One flipped byte in shard 1's file.
    let file = path.join("ckpt-00000000000000000007-s0001.dat");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[200] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let (code, out) = inspect(&path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint 7 Checkpoint INVALID"), "{out}");
    assert!(out.contains("s0001.dat"), "the damaged file is named: {out}");

    let empty = fresh("empty");
    let (code, out) = inspect(&empty);
    assert_eq!(code, 1);
    assert!(out.contains("no such directory"), "{out}");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (code, out) = inspect(&empty);
    assert_eq!(code, 1);
    assert!(out.contains("no checkpoint"), "{out}");
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_dir_all(&empty);
}
