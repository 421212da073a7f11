//! Vigil
