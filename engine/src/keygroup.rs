//! Key groups (being written).
