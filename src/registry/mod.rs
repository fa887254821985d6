//! registry module (filled in by its issue).
