//! proxy module (filled in by its issue).
