//! Procedural macros for meshtrace.
