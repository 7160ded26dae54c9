//! Exchange rings (being written).
