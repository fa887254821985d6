//! bench module (filled in by its issue).
