//! Real checkpoint files as seeds for the fuzz target (`engine/fuzz`, run by `scripts/fuzz.sh`),
//! and a check that they are what they claim to be.
//!
//! * `fuzz_seeds_are_valid_files`: writes shard files (small blocks, several sections, an empty
//!   file) and manifests (1 and 3 shards, a savepoint), and asserts each one validates, so the
//!   fuzzer starts from inputs that reach every check. With `PINWHEEL_FUZZ_SEEDS=<dir>` the seeds
//!   are also copied there (what `scripts/fuzz.sh` does); otherwise nothing leaves the test's
//!   temporary directory.

mod common;

use std::path::Path;

use pinwheel_engine::checkpoint::{
    CheckpointKind, Manifest, ShardFileMeta, WriteOptions, manifest_name, validate_bytes,
    write_shard_file,
};
use pinwheel_engine::keygroup::{KeyGroup, KeyGroupRange};

#[test]
fn fuzz_seeds_are_valid_files() {
    let dir = common::fresh_dir("fuzz-seeds");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (c, shards, kind, block) in [
        (1, 1, CheckpointKind::Checkpoint, 64),
        (2, 3, CheckpointKind::Checkpoint, 1024),
        (3, 1, CheckpointKind::Savepoint, 65536),
    ] {
        let options = WriteOptions::default().with_block_size(block);
        let m = common::write_checkpoint(&dir, c, shards, kind, &options).unwrap();
        for s in &m.shards {
            let bytes = std::fs::read(dir.path().join(&s.file)).unwrap();
            validate_bytes(Path::new(&s.file), &bytes).unwrap();
            seeds.push((s.file.clone(), bytes));
        }
        let name = manifest_name(c);
        let bytes = std::fs::read(dir.path().join(&name)).unwrap();
        assert_eq!(Manifest::decode(Path::new(&name), &bytes).unwrap(), m);
        seeds.push((name, bytes));
    }
    let range = KeyGroupRange::new(KeyGroup(0), KeyGroup(0)).unwrap();
    let empty =
        write_shard_file(&dir, &ShardFileMeta::new(9, 0, 1, range), &[], &WriteOptions::default())
            .unwrap();
    let bytes = std::fs::read(&empty.path).unwrap();
    validate_bytes(&empty.path, &bytes).unwrap();
    seeds.push(("empty.dat".into(), bytes));
    assert_eq!(seeds.len(), 9);

    if let Some(out) = std::env::var_os("PINWHEEL_FUZZ_SEEDS") {
        std::fs::create_dir_all(&out).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(Path::new(&out).join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}
