//! Watermark valves (being written).
