//! Topic names (being written).
