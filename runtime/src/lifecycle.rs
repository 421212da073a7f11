//! Agent lifecycle (to be written).
