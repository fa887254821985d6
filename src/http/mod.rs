//! http module (filled in by its issue).
