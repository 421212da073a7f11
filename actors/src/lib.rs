//! The built-in Vigil agents of the specification (added agent by agent).
