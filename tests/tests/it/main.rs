//! Integration tests (written by the lead).
