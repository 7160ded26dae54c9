//! `--huge-pages`: whether the driver's process may use transparent huge pages.
//!
//! mimalloc (the driver's allocator) asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`),
//! which suits throughput: one TLB entry covers 2 MiB of a million keys' state. It costs latency
//! where memory is new: the first touch of each 2 MiB region is one page fault that zeroes the whole
//! region. Measured on this machine's VM (host memory backed on first touch), such a fault took
//! 4–5 ms of kernel time, and the heartbeat job at 1 M keys showed them as its p99.9 and max
//! (docs/benchmarks.md, "Huge pages and the latency tail"). With huge pages off the same growth costs
//! 4 KiB faults of a few microseconds each, spread over the run. Latency-sensitive deployments
//! commonly turn transparent huge pages off for the same reason; the driver does it for heartbeat.

/// A `--huge-pages` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HugePages {
    /// The system's setting (`/sys/kernel/mm/transparent_hugepage/enabled`), with mimalloc's advice.
    System,
    /// No transparent huge pages for this process (`prctl(PR_SET_THP_DISABLE)`).
    Off,
}

impl HugePages {
    /// The name the result line shows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HugePages::System => "system",
            HugePages::Off => "off",
        }
    }

    /// Applies the setting to this process; call it before the job allocates its state.
    pub(crate) fn apply(self) -> std::io::Result<()> {
        match self {
            HugePages::System => Ok(()),
            HugePages::Off => disable_thp(),
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one libc call, no pointers
fn disable_thp() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn disable_thp() -> std::io::Result<()> {
    Ok(()) // no transparent huge pages to turn off
}
