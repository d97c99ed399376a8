//! context (being written).
