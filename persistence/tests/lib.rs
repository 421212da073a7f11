//! Integration tests of vigil-persistence, one binary.
mod actor;
