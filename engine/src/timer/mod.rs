//! Timer stores: the hierarchical timing wheel (being written).
