//! server module (filled in by its issue).
