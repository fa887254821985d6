//! echo module (filled in by its issue).
