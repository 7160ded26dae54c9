//! The file names of the checkpoint directory, and their parsing.
//!
//! | file | name |
//! |---|---|
//! | shard file, while written | `ckpt-{c:020}-s{s:04}-a{a}.tmp` |
//! | shard file, published | `ckpt-{c:020}-s{s:04}.dat` |
//! | manifest, while written | `MANIFEST-{c:020}.tmp` |
//! | manifest, published | `MANIFEST-{c:020}` |
//!
//! The checkpoint id is zero-padded to 20 digits (all of `u64`) and the shard to 4, so names sort
//! in checkpoint order; a shard id past 9999 simply takes more digits. Parsing accepts exactly
//! what these functions produce (no sign, no missing or extra padding), so a stray file such as
//! `MANIFEST-7` is never taken for checkpoint 7.

/// The published name of shard `shard`'s file of checkpoint `checkpoint`.
pub fn shard_file_name(checkpoint: u64, shard: u32) -> String {
    format!("ckpt-{checkpoint:020}-s{shard:04}.dat")
}

/// The temporary name of attempt `attempt` at writing that file.
pub fn shard_tmp_name(checkpoint: u64, shard: u32, attempt: u32) -> String {
    format!("ckpt-{checkpoint:020}-s{shard:04}-a{attempt}.tmp")
}

/// The published name of checkpoint `checkpoint`'s manifest.
pub fn manifest_name(checkpoint: u64) -> String {
    format!("MANIFEST-{checkpoint:020}")
}

/// The temporary name of that manifest.
pub fn manifest_tmp_name(checkpoint: u64) -> String {
    format!("MANIFEST-{checkpoint:020}.tmp")
}

/// A file name of the checkpoint directory, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileName {
    Shard { checkpoint: u64, shard: u32 },
    ShardTmp { checkpoint: u64, shard: u32, attempt: u32 },
    Manifest { checkpoint: u64 },
    ManifestTmp { checkpoint: u64 },
}

fn checkpoint_digits(s: &str) -> Option<u64> {
    (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn shard_digits(s: &str) -> Option<u32> {
    let canonical = s.len() == 4 || (s.len() > 4 && !s.starts_with('0'));
    (canonical && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn attempt_digits(s: &str) -> Option<u32> {
    let canonical = !s.is_empty() && (s == "0" || !s.starts_with('0'));
    (canonical && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

impl FileName {
    pub(crate) fn parse(name: &str) -> Option<FileName> {
        if let Some(rest) = name.strip_prefix("MANIFEST-") {
            return match rest.strip_suffix(".tmp") {
                Some(c) => Some(FileName::ManifestTmp { checkpoint: checkpoint_digits(c)? }),
                None => Some(FileName::Manifest { checkpoint: checkpoint_digits(rest)? }),
            };
        }
        let rest = name.strip_prefix("ckpt-")?;
        let (c, rest) = rest.split_once("-s")?;
        let checkpoint = checkpoint_digits(c)?;
        if let Some(s) = rest.strip_suffix(".dat") {
            return Some(FileName::Shard { checkpoint, shard: shard_digits(s)? });
        }
        let rest = rest.strip_suffix(".tmp")?;
        let (s, a) = rest.split_once("-a")?;
        Some(FileName::ShardTmp {
            checkpoint,
            shard: shard_digits(s)?,
            attempt: attempt_digits(a)?,
        })
    }

    pub(crate) fn checkpoint(&self) -> u64 {
        match *self {
            FileName::Shard { checkpoint, .. }
            | FileName::ShardTmp { checkpoint, .. }
            | FileName::Manifest { checkpoint }
            | FileName::ManifestTmp { checkpoint } => checkpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The names parse back to what made them, sort in checkpoint order, and nothing else
    //! parses (so a stray file is never taken for a checkpoint).

    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        for (c, s, a) in [(0, 0, 0), (7, 3, 12), (u64::MAX, 12345, u32::MAX)] {
            assert_eq!(
                FileName::parse(&shard_file_name(c, s)),
                Some(FileName::Shard { checkpoint: c, shard: s })
            );
            assert_eq!(
                FileName::parse(&shard_tmp_name(c, s, a)),
                Some(FileName::ShardTmp { checkpoint: c, shard: s, attempt: a })
            );
            assert_eq!(
                FileName::parse(&manifest_name(c)),
                Some(FileName::Manifest { checkpoint: c })
            );
            assert_eq!(
                FileName::parse(&manifest_tmp_name(c)),
                Some(FileName::ManifestTmp { checkpoint: c })
            );
        }
        assert!(manifest_name(9) < manifest_name(10));
        assert!(shard_file_name(9, 1) < shard_file_name(10, 0));
    }

    #[test]
    fn other_names_do_not_parse() {
        for name in [
            "MANIFEST-7",
            "MANIFEST-+0000000000000000007",
            "MANIFEST-00000000000000000007.bak",
            "ckpt-00000000000000000007-s1.dat",
            "ckpt-00000000000000000007-s00001.dat",
            "ckpt-00000000000000000007-s0001-a01.tmp",
            "ckpt-00000000000000000007-s0001-a.tmp",
            "ckpt-99999999999999999999-s0001.dat",
            "README",
        ] {
            assert_eq!(FileName::parse(name), None, "{name}");
        }
    }
}
