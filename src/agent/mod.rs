//! agent module (filled in by its issue).
