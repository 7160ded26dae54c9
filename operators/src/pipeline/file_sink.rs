//! Exactly-once files ([`ExactlyOnceFiles`]): each shard writes its records into a file of its
//! own, and a file becomes visible under its final name only once the checkpoint after its
//! records is complete, so that what a reader sees is every record once, crash or no crash
//! (the two phases are in `commit.rs`).
//!
//! In the output directory:
//!
//! ```text
//!  .inprogress-{shard:04}          being written (records after the shard's last barrier)
//!  .pending-{id:020}-{shard:04}    pre-committed at barrier id (synced, renamed, directory synced)
//!  part-{id:020}-{shard:04}        committed: checkpoint id is complete
//! ```
//!
//! A run that completes commits its last records with its final checkpoint, under the id after
//! the shard's last barrier. Read the output as the `part-` files in name order
//! ([`ExactlyOnceFiles::committed`]): within one shard that is the order of its records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::commit::Committer;
use super::sink::Sink;
use crate::context::ShardInfo;
use crate::error::SinkError;
use crate::output::StreamElement;

/// How a record becomes bytes of a file: appended to the buffer.
type Encode<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// Bytes buffered before they are written to the in-progress file.
const BUFFER: usize = 1 << 20;

/// What failed in an exactly-once file sink, on which file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileSinkError {
    /// A file operation failed.
    #[error("exactly-once files: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The sink wrote before its committer recovered the directory: the committer was not
    /// registered with the pipeline, and nothing would ever become visible.
    #[error(
        "exactly-once files in {}: the committer was not registered (Pipeline::exactly_once)",
        dir.display()
    )]
    NotRegistered {
        /// The output directory.
        dir: PathBuf,
    },
    /// The directory holds committed output newer than the checkpoint the run restores (or
    /// any committed output, for a fresh start): the run would write it a second time.
    #[error(
        "exactly-once files in {}: {file} is committed output of checkpoint {committed}, newer than \
         the checkpoint this run starts from ({restored}); use an empty directory or the \
         checkpoints that wrote it",
        dir.display()
    )]
    NewerOutput {
        /// The output directory.
        dir: PathBuf,
        /// The committed file.
        file: String,
        /// Its checkpoint.
        committed: u64,
        /// The checkpoint the run starts from (0: none).
        restored: u64,
    },
}

/// An output directory of exactly-once files, with the encoding of one record: make one, register
/// its [`committer`](Self::committer) with [`Pipeline::exactly_once`](super::Pipeline::exactly_once),
/// and give every shard its [`sink`](Self::sink).
///
/// ```no_run
/// use std::io::Write;
/// use pinwheel_operators::pipeline::{Checkpointing, ExactlyOnceFiles, Pipeline};
///
/// let files = ExactlyOnceFiles::new("out", |&(key, n): &(u64, u64), line: &mut Vec<u8>| {
///     let _ = writeln!(line, "{key},{n}");
/// })?;
/// let pipeline = Pipeline::new()
///     .checkpointing(Checkpointing::new("checkpoints"))
///     .exactly_once(files.committer());
/// let counts = pipeline.from_iter((0..1_000u64).map(|i| (i % 10, 1u64)));
/// counts.run_sharded(|shard| files.sink(shard))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ExactlyOnceFiles<T> {
    dir: Arc<Dir>,
    encode: Encode<T>,
}

impl<T> Clone for ExactlyOnceFiles<T> {
    fn clone(&self) -> Self {
        ExactlyOnceFiles { dir: self.dir.clone(), encode: self.encode.clone() }
    }
}

impl<T> std::fmt::Debug for ExactlyOnceFiles<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnceFiles").field("dir", &self.dir.path).finish_non_exhaustive()
    }
}

/// The output directory, shared by the committer and the sinks.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    /// The checkpoint the run starts from (0: none), once recovered.
    restored: AtomicU64,
    recovered: AtomicBool,
}

impl<T> ExactlyOnceFiles<T> {
    /// Exactly-once files in `dir` (created if missing), each record appended by `encode`.
    ///
    /// # Errors
    ///
    /// [`FileSinkError::Io`] when the directory cannot be created.
    pub fn new(
        dir: impl Into<PathBuf>,
        encode: impl Fn(&T, &mut Vec<u8>) + Send + Sync + 'static,
    ) -> Result<Self, FileSinkError> {
        let path = dir.into();
        fs::create_dir_all(&path).map_err(io_error("create directory", &path))?;
        let dir = Dir { path, restored: AtomicU64::new(0), recovered: AtomicBool::new(false) };
        Ok(ExactlyOnceFiles { dir: Arc::new(dir), encode: Arc::new(encode) })
    }

    /// The committer, for [`Pipeline::exactly_once`](super::Pipeline::exactly_once).
    pub fn committer(&self) -> Arc<dyn Committer> {
        self.dir.clone()
    }

    /// Shard `shard`'s sink.
    pub fn sink(&self, shard: ShardInfo) -> FileSink<T> {
        FileSink {
            dir: self.dir.clone(),
            encode: self.encode.clone(),
            shard: shard.index,
            file: None,
            buf: Vec::new(),
            last_barrier: 0,
        }
    }

    /// The committed files of `dir`, in name order (checkpoint, then shard): the output.
    ///
    /// # Errors
    ///
    /// [`FileSinkError::Io`] when the directory cannot be read.
    pub fn committed(dir: &Path) -> Result<Vec<PathBuf>, FileSinkError> {
        let mut parts: Vec<PathBuf> = list(dir)?
            .into_iter()
            .filter(|(_, name)| matches!(parse(name), Some(Name::Part { .. })))
            .map(|(path, _)| path)
            .collect();
        parts.sort();
        Ok(parts)
    }
}

/// A file name of the output directory.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    InProgress,
    Pending { id: u64 },
    Part { id: u64 },
}

fn parse(name: &str) -> Option<Name> {
    let id_of = |rest: &str| -> Option<u64> {
        let (id, shard) = rest.split_once('-')?;
        shard.parse::<u32>().ok()?;
        id.parse().ok()
    };
    if let Some(rest) = name.strip_prefix(".pending-") {
        return id_of(rest).map(|id| Name::Pending { id });
    }
    if let Some(rest) = name.strip_prefix("part-") {
        return id_of(rest).map(|id| Name::Part { id });
    }
    name.strip_prefix(".inprogress-")?.parse::<u32>().ok().map(|_| Name::InProgress)
}

fn pending_name(id: u64, shard: usize) -> String {
    format!(".pending-{id:020}-{shard:04}")
}

fn part_name(id: u64, shard: &str) -> String {
    format!("part-{id:020}-{shard}")
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileSinkError + 'a {
    move |source| FileSinkError::Io { op, path: path.to_path_buf(), source }
}

/// Every entry of `dir` with its name.
fn list(dir: &Path) -> Result<Vec<(PathBuf, String)>, FileSinkError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((entry.path(), name));
        }
    }
    Ok(out)
}

/// Makes the directory's entries (renames, removals) durable.
fn sync_dir(dir: &Path) -> Result<(), FileSinkError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
}

impl Dir {
    /// Renames every pending file of a checkpoint up to `upto` to its committed name; true if
    /// any was.
    fn commit_upto(&self, upto: u64) -> Result<bool, FileSinkError> {
        let mut any = false;
        for (path, name) in list(&self.path)? {
            if let Some(Name::Pending { id }) = parse(&name) {
                if id <= upto {
                    let shard = name.rsplit('-').next().unwrap_or_default();
                    let to = self.path.join(part_name(id, shard));
                    if to.exists() {
                        // Never replace committed output (the names of one run never repeat).
                        return Err(FileSinkError::Io {
                            op: "commit",
                            path: to,
                            source: io::Error::from(io::ErrorKind::AlreadyExists),
                        });
                    }
                    fs::rename(&path, &to).map_err(io_error("commit (rename)", &path))?;
                    any = true;
                }
            }
        }
        Ok(any)
    }
}

impl Committer for Dir {
    fn recover(&self, restored: Option<u64>) -> Result<(), SinkError> {
        let r = restored.unwrap_or(0);
        self.commit_upto(r)?;
        for (path, name) in list(&self.path)? {
            match parse(&name) {
                Some(Name::InProgress) => {
                    fs::remove_file(&path).map_err(io_error("remove", &path))?;
                }
                Some(Name::Pending { id }) if id > r => {
                    fs::remove_file(&path).map_err(io_error("remove", &path))?;
                }
                Some(Name::Part { id }) if id > r => {
                    return Err(Box::new(FileSinkError::NewerOutput {
                        dir: self.path.clone(),
                        file: name,
                        committed: id,
                        restored: r,
                    }));
                }
                _ => {}
            }
        }
        sync_dir(&self.path)?;
        self.restored.store(r, Ordering::Release);
        self.recovered.store(true, Ordering::Release);
        Ok(())
    }

    fn commit(&self, checkpoint: u64) -> Result<(), SinkError> {
        if self.commit_upto(checkpoint)? {
            sync_dir(&self.path)?;
        }
        Ok(())
    }
}

/// One shard's exactly-once file sink ([`ExactlyOnceFiles::sink`]): records go to its
/// in-progress file; at a barrier the file is synced and pre-committed; at the end, too.
pub struct FileSink<T> {
    dir: Arc<Dir>,
    encode: Encode<T>,
    shard: usize,
    /// The in-progress file, opened at the first record after a barrier.
    file: Option<(File, PathBuf)>,
    buf: Vec<u8>,
    last_barrier: u64,
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.dir.path)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl<T> FileSink<T> {
    /// Writes the buffer to the in-progress file (opening it first).
    fn flush_buffer(&mut self) -> Result<(), FileSinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            if !self.dir.recovered.load(Ordering::Acquire) {
                return Err(FileSinkError::NotRegistered { dir: self.dir.path.clone() });
            }
            let path = self.dir.path.join(format!(".inprogress-{:04}", self.shard));
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(io_error("create", &path))?;
            self.file = Some((file, path));
        }
        if let Some((file, path)) = &mut self.file {
            file.write_all(&self.buf).map_err(io_error("write", path))?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Pre-commits what was written since the last barrier as pending `id`: written, synced,
    /// renamed, the directory synced. Nothing when nothing was written.
    fn pre_commit(&mut self, id: u64) -> Result<(), FileSinkError> {
        self.flush_buffer()?;
        if let Some((file, path)) = self.file.take() {
            file.sync_data().map_err(io_error("sync", &path))?;
            drop(file);
            let to = self.dir.path.join(pending_name(id, self.shard));
            fs::rename(&path, &to).map_err(io_error("pre-commit (rename)", &path))?;
            sync_dir(&self.dir.path)?;
        }
        Ok(())
    }
}

impl<T> Sink<T> for FileSink<T> {
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        if let StreamElement::Record { value, .. } = element {
            (self.encode)(&value, &mut self.buf);
            if self.buf.len() >= BUFFER {
                self.flush_buffer()?;
            }
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<StreamElement<T>>) -> Result<(), SinkError> {
        for e in batch.drain(..) {
            if let StreamElement::Record { value, .. } = e {
                (self.encode)(&value, &mut self.buf);
            }
        }
        if self.buf.len() >= BUFFER {
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        self.pre_commit(checkpoint)?;
        self.last_barrier = checkpoint;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        // After the last barrier (and after the checkpoint the run restored): the final
        // checkpoint, or a later one that counts this finished sink as acknowledged, commits it.
        let restored = self.dir.restored.load(Ordering::Acquire);
        self.pre_commit(self.last_barrier.max(restored) + 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(parse(&pending_name(7, 3)), Some(Name::Pending { id: 7 }));
        assert_eq!(parse(&part_name(7, "0003")), Some(Name::Part { id: 7 }));
        assert_eq!(parse(".inprogress-0001"), Some(Name::InProgress));
        for other in ["part-x-0001", "part-7", ".pending-7-x", "notes.txt", ".inprogress-"] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
