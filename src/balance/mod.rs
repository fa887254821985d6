//! balance module (filled in by its issue).
