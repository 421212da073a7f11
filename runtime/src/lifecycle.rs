//! Agent lifecycle (placeholder: the lifecycle-macros branch replaces this file).

/// A transition that has been applied (placeholder).
#[derive(Debug, Clone)]
pub struct Transition;
