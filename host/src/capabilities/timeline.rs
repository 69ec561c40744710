//! The timeline capability: lines a runbook adds to the incident timeline. Always granted,
//! bounded in count and length so a runbook cannot flood the timeline.

use super::CallContext;
use crate::bindings::quell::runbook::timeline::Host;

/// At most this many notes per invocation; later ones are dropped with one marker.
const MAX_NOTES: usize = 100;
/// Each note is cut to this many bytes.
const MAX_NOTE_BYTES: usize = 4096;

impl Host for CallContext {
    async fn note(&mut self, text: String) {
        match self.notes.len() {
            n if n < MAX_NOTES => {
                let mut end = text.len().min(MAX_NOTE_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                self.notes.push(text[..end].to_owned());
            }
            n if n == MAX_NOTES => self.notes.push(format!(
                "(further notes dropped: at most {MAX_NOTES} per call)"
            )),
            _ => {}
        }
    }
}
