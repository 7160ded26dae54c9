//! The durable file-system steps of the checkpoint protocol (docs/reliability.md §1.1, §1.5,
//! §3.2), one function per step so that every step has one call site where a fault can be
//! injected ([`FaultPlan`]).
//!
//! # Ground rules for the unsafe code in this module
//!
//! This is one of the four modules of the engine allowed `unsafe` code (docs/conventions.md). It
//! has four unsafe calls, and nothing else in the checkpoint layer touches raw memory or file
//! descriptors:
//!
//! * `MmapMut::map_mut` maps a temporary file **this process just created** with `O_EXCL` and
//!   mode `0600` in a directory that only the process's user can write ([`super::CheckpointDir`]
//!   refuses any other). No other process is expected to truncate or write it while it is mapped;
//!   if one does (the same user acting deliberately), a write may fault with `SIGBUS`. The file's
//!   whole size is reserved with `posix_fallocate` *before* the mapping, so a full disk is an
//!   `ENOSPC` error, never a `SIGBUS`. The mapping is only ever used as a `&mut [u8]` of its exact
//!   length, within this module, and unmapped before the file is closed and renamed. Files are
//!   never mapped for reading (§3.1): the reader copies them into owned buffers.
//! * `libc::posix_fallocate` and `libc::close` are called on a descriptor owned by a live `File`
//!   (`close` consumes it with `into_raw_fd`, so it is closed exactly once).
//! * `libc::geteuid` has no preconditions.
//!
//! # Failure handling
//!
//! Any error kills the attempt: [`write_durable`] unlinks the temporary file (and, if only the
//! directory `fsync` failed, the renamed file) and returns the error. No step is retried, and no
//! `fsync` is ever called again on a descriptor whose `fsync` failed (fsyncgate, §1.5): a new
//! attempt writes a new file under a new name.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::MmapMut;

use super::error::{CheckpointError, IoOp};

/// Which I/O step a [`FaultPlan`] acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultTrigger {
    /// The `k`-th step of any kind, counting from 1, across every call that uses the plan.
    Step(u64),
    /// The `k`-th step of kind `op`, counting from 1.
    Op(IoOp, u64),
}

/// What a [`FaultPlan`] does when its trigger is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// The triggering step fails with this `errno` instead of running; later steps run.
    FailOnce(i32),
    /// The triggering step and every later step it matches (every later step for
    /// [`FaultTrigger::Step`], every later step of the kind for [`FaultTrigger::Op`]) fail with
    /// this `errno`.
    FailPersistent(i32),
    /// The process stops at the triggering step (`std::process::abort`), before running it: for
    /// crash tests run in a child process.
    Abort,
}

#[derive(Debug, Default)]
struct FaultState {
    rule: Option<(FaultTrigger, FaultAction)>,
    steps: u64,
    counts: [u64; IoOp::ALL.len()],
    fired: u64,
}

/// A fault-injection plan for the checkpoint I/O steps: tests make the k-th step fail or stop the
/// process, and count the steps by kind.
///
/// The default plan is empty and costs one branch per I/O step (the steps are system calls, each
/// far more expensive). A non-empty plan is shared by its clones, so a test keeps one clone to
/// read the counters after handing another to the code under test. Every step of the write
/// protocol (and the reads, listings and removals of [`super::CheckpointDir`] that take a plan)
/// goes through it: see [`IoOp`] for the kinds.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    state: Option<Arc<Mutex<FaultState>>>,
}

/// Plans are equal when they are the same plan (clones of one another), or both empty.
impl PartialEq for FaultPlan {
    fn eq(&self, other: &Self) -> bool {
        match (&self.state, &other.state) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for FaultPlan {}

impl FaultPlan {
    /// The empty plan: nothing is injected or counted.
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// A plan that counts the steps and injects nothing.
    pub fn counting() -> Self {
        FaultPlan { state: Some(Arc::default()) }
    }

    /// A plan that counts the steps and applies `action` at `trigger`.
    pub fn inject(trigger: FaultTrigger, action: FaultAction) -> Self {
        let state = FaultState { rule: Some((trigger, action)), ..FaultState::default() };
        FaultPlan { state: Some(Arc::new(Mutex::new(state))) }
    }

    fn with<R>(&self, f: impl FnOnce(&FaultState) -> R) -> Option<R> {
        let state = self.state.as_ref()?;
        let guard = state.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&guard))
    }

    /// The number of steps run (or failed) so far; 0 for the empty plan.
    pub fn steps(&self) -> u64 {
        self.with(|s| s.steps).unwrap_or(0)
    }

    /// The number of steps of kind `op` so far.
    pub fn count(&self, op: IoOp) -> u64 {
        self.with(|s| s.counts[op_index(op)]).unwrap_or(0)
    }

    /// The number of faults injected so far: a fault test asserts it is at least what it expects
    /// (docs/reliability.md §4: a fault that never fired proves nothing).
    pub fn fired(&self) -> u64 {
        self.with(|s| s.fired).unwrap_or(0)
    }

    /// Called at the start of every step, before the system call: counts it and applies the
    /// rule.
    pub(crate) fn check(&self, op: IoOp) -> io::Result<()> {
        let Some(state) = &self.state else { return Ok(()) };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.steps += 1;
        s.counts[op_index(op)] += 1;
        let Some((trigger, action)) = s.rule else { return Ok(()) };
        let (hit, past) = match trigger {
            FaultTrigger::Step(k) => (s.steps == k, s.steps > k),
            FaultTrigger::Op(o, k) if o == op => {
                let n = s.counts[op_index(op)];
                (n == k, n > k)
            }
            FaultTrigger::Op(..) => (false, false),
        };
        let errno = match action {
            FaultAction::FailOnce(errno) if hit => errno,
            FaultAction::FailPersistent(errno) if hit || past => errno,
            FaultAction::Abort if hit => std::process::abort(),
            _ => return Ok(()),
        };
        s.fired += 1;
        Err(io::Error::from_raw_os_error(errno))
    }
}

fn op_index(op: IoOp) -> usize {
    IoOp::ALL.iter().position(|&o| o == op).unwrap_or(0)
}

fn step<T>(
    faults: &FaultPlan,
    op: IoOp,
    path: &Path,
    f: impl FnOnce() -> io::Result<T>,
) -> Result<T, CheckpointError> {
    faults.check(op).and_then(|()| f()).map_err(|e| CheckpointError::io(op, path, e))
}

/// The process's effective user id, which must own the checkpoint directory.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `path` exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`), mode `0600` less the umask.
fn create_new(faults: &FaultPlan, path: &Path) -> Result<File, CheckpointError> {
    let file = step(faults, IoOp::Create, path, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    })?;
    Ok(file)
}

/// Sets a created file's mode to exactly `0600`: the umask may have cleared bits of the mode
/// `create_new` asked for (it never adds any).
fn chmod_600(faults: &FaultPlan, path: &Path, file: &File) -> Result<(), CheckpointError> {
    step(faults, IoOp::Chmod, path, || file.set_permissions(std::fs::Permissions::from_mode(0o600)))
}

/// Reserves `len` bytes for `file`, so that writing through a mapping cannot hit a full disk.
fn fallocate(
    faults: &FaultPlan,
    path: &Path,
    file: &File,
    len: u64,
) -> Result<(), CheckpointError> {
    step(faults, IoOp::Fallocate, path, || {
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: the descriptor belongs to `file`, which is open for writing and outlives the
        // call; posix_fallocate touches no memory of ours.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        // posix_fallocate returns the error number instead of setting errno.
        if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
    })
}

/// Maps the whole of `file` (already of its final size) for writing.
fn map(faults: &FaultPlan, path: &Path, file: &File) -> Result<MmapMut, CheckpointError> {
    step(faults, IoOp::Mmap, path, || {
        // SAFETY: see the ground rules: the file was created by this process with O_EXCL and
        // mode 0600 in a directory only our user can write, its size is reserved, and the map is
        // used only as a byte slice inside this module and dropped before the file is closed.
        unsafe { MmapMut::map_mut(file) }
    })
}

/// Closes `file`, reporting the error `close` returns (which `File`'s drop ignores).
fn close(faults: &FaultPlan, path: &Path, file: File) -> Result<(), CheckpointError> {
    if let Err(e) = faults.check(IoOp::Close) {
        drop(file);
        return Err(CheckpointError::io(IoOp::Close, path, e));
    }
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so it is open and owned by nobody else;
    // it is closed exactly once, here, and never used again (even on error: Linux releases the
    // descriptor whatever close returns).
    let rc = unsafe { libc::close(fd) };
    if rc == 0 {
        Ok(())
    } else {
        Err(CheckpointError::io(IoOp::Close, path, io::Error::last_os_error()))
    }
}

/// Makes the directory entries of `dir` durable (`fsync` on a descriptor of the directory).
pub(crate) fn fsync_dir(faults: &FaultPlan, dir: &Path) -> Result<(), CheckpointError> {
    step(faults, IoOp::FsyncDir, dir, || {
        let d = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)?;
        d.sync_all()
    })
}

/// Writes a file of exactly `size` bytes durably and publishes it as `dir/final_name`:
/// create `dir/tmp_name` exclusively, fallocate, mmap, `fill` the mapping, msync, munmap,
/// fdatasync, close, rename, fsync the directory (docs/reliability.md §1.1).
///
/// On any error the temporary file is unlinked (and the final one, if only the directory fsync
/// failed), and the error is returned: the caller's next attempt uses a new temporary name.
pub(crate) fn write_durable<T>(
    faults: &FaultPlan,
    dir: &Path,
    tmp_name: &str,
    final_name: &str,
    size: u64,
    fill: impl FnOnce(&mut [u8]) -> Result<T, CheckpointError>,
) -> Result<(PathBuf, T), CheckpointError> {
    if size == 0 {
        return Err(CheckpointError::InvalidArgument("a durable file cannot be empty".into()));
    }
    let tmp = dir.join(tmp_name);
    let dest = dir.join(final_name);
    let file = create_new(faults, &tmp)?;
    let written = (|| {
        chmod_600(faults, &tmp, &file)?;
        fallocate(faults, &tmp, &file, size)?;
        let mut mapping = map(faults, &tmp, &file)?;
        if mapping.len() as u64 != size {
            return Err(CheckpointError::io(
                IoOp::Mmap,
                &tmp,
                io::Error::other(format!("mapped {} bytes, expected {size}", mapping.len())),
            ));
        }
        let value = fill(&mut mapping[..])?;
        step(faults, IoOp::Msync, &tmp, || mapping.flush())?;
        drop(mapping);
        step(faults, IoOp::Fdatasync, &tmp, || file.sync_data())?;
        Ok(value)
    })();
    let value = match written.and_then(|v| close(faults, &tmp, file).map(|()| v)) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = step(faults, IoOp::Rename, &tmp, || std::fs::rename(&tmp, &dest)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fsync_dir(faults, dir) {
        // The rename may or may not survive a crash; make sure it is not seen now.
        let _ = std::fs::remove_file(&dest);
        return Err(e);
    }
    Ok((dest, value))
}

/// Reads the whole regular file `path` into an owned buffer, refusing a symlink and a file of
/// more than `max_bytes` (docs/reliability.md §3.1: never mmap for reading).
pub(crate) fn read_file(
    faults: &FaultPlan,
    path: &Path,
    max_bytes: u64,
) -> Result<Vec<u8>, CheckpointError> {
    use std::io::Read;
    let file = step(faults, IoOp::Open, path, || {
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
    })?;
    let meta = step(faults, IoOp::Read, path, || file.metadata())?;
    if !meta.is_file() {
        return Err(CheckpointError::NotA { path: path.to_path_buf(), expected: "regular file" });
    }
    if meta.len() > max_bytes {
        return Err(CheckpointError::TooLarge {
            what: "checkpoint file",
            len: meta.len(),
            limit: max_bytes,
        });
    }
    // The size may change under us: read at most max_bytes + 1 to notice growth past the cap,
    // and let validation compare the declared size with what was actually read.
    let cap = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    let mut buf = Vec::with_capacity(cap);
    step(faults, IoOp::Read, path, || {
        file.take(max_bytes.saturating_add(1)).read_to_end(&mut buf)
    })?;
    if buf.len() as u64 > max_bytes {
        return Err(CheckpointError::TooLarge {
            what: "checkpoint file",
            len: buf.len() as u64,
            limit: max_bytes,
        });
    }
    Ok(buf)
}

/// Removes `path` (garbage collection, leftover temporary files).
pub(crate) fn remove(faults: &FaultPlan, path: &Path) -> Result<(), CheckpointError> {
    step(faults, IoOp::Remove, path, || std::fs::remove_file(path))
}
