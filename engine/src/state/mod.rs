//! Keyed state columns (being written).
