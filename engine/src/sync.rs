//! Synchronization shim (being written).
