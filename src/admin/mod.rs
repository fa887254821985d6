//! admin module (filled in by its issue).
