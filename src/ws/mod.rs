//! ws module (filled in by its issue).
