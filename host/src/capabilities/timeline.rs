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

/// The run in progress (`run-context`, since 0.1.1): whether writes are simulated, and a
/// runbook's hand-over to on-call from `diagnose`.
impl crate::bindings::quell::runbook::run_context::Host for CallContext {
    async fn dry_run(&mut self) -> bool {
        self.dry_run
    }

    async fn escalate(&mut self, reason: String) {
        // Only a diagnosis hands over; the first reason given is the one on-call reads.
        if self.phase == super::Phase::Diagnose && self.escalation.is_none() {
            let mut end = reason.len().min(MAX_NOTE_BYTES);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            self.escalation = Some(self.caps.redact.text(reason[..end].to_owned()));
        }
    }
}
