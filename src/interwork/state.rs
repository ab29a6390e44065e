//! The canonical receipt state both worlds map to (SMPP receipts and IMDN notifications),
//! the rule that a receipt only moves forward, and the aggregation of a concatenated
//! message's part receipts into one.
//!
//! | canonical | IMDN | SMPP stat / message_state |
//! |---|---|---|
//! | delivered | delivery / delivered | DELIVRD / 2 |
//! | failed | delivery / failed | UNDELIV 5, EXPIRED 3, DELETED 4 |
//! | rejected | delivery / forbidden | REJECTD 8 |
//! | unknown | delivery / error | UNKNOWN 7 |
//! | buffered (not final) | processing / stored | ACCEPTD 6, ENROUTE 1 |
//! | displayed | display / displayed | esm_class 0x10 user ack |

/// Where a message stands, in the terms both sides share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptState {
    /// Accepted or en route, not final.
    Buffered,
    /// Delivered to the recipient.
    Delivered,
    /// Could not be delivered (undeliverable, expired, deleted).
    Failed,
    /// Refused (by policy, or the recipient forbids it).
    Rejected,
    /// The far end reported an error or an unknown outcome.
    Unknown,
    /// Read by the recipient (display notification / SME user ack).
    Displayed,
}

impl ReceiptState {
    /// Whether no later delivery receipt may change it.
    pub fn is_final(self) -> bool {
        !matches!(self, ReceiptState::Buffered)
    }

    /// Whether the state is a failure of some kind (failed, rejected, unknown).
    pub fn is_failure(self) -> bool {
        matches!(self, ReceiptState::Failed | ReceiptState::Rejected | ReceiptState::Unknown)
    }

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            ReceiptState::Buffered => "buffered",
            ReceiptState::Delivered => "delivered",
            ReceiptState::Failed => "failed",
            ReceiptState::Rejected => "rejected",
            ReceiptState::Unknown => "unknown",
            ReceiptState::Displayed => "displayed",
        }
    }
}

/// What to do with a receipt, given what was already reported for the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// New information: forward it.
    Advance,
    /// The same state again: absorb it (answer the peer, send nothing on).
    Duplicate,
    /// Older or contradicting information after a final state: absorb and count it.
    Stale,
}

/// What was reported for one message (or one segment) so far. Delivery and display are
/// two tracks: a display notification follows delivery and never replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiptRecord {
    /// The last delivery-track state reported.
    pub delivery: Option<ReceiptState>,
    /// Whether a display (read) was reported.
    pub displayed: bool,
}

impl ReceiptRecord {
    /// Applies `next`, returning what to do with it. A final state is never replaced by
    /// an intermediate one; the first final state wins; duplicates are absorbed.
    pub fn apply(&mut self, next: ReceiptState) -> Transition {
        if next == ReceiptState::Displayed {
            if self.displayed {
                return Transition::Duplicate;
            }
            self.displayed = true;
            return Transition::Advance;
        }
        match self.delivery {
            None => {
                self.delivery = Some(next);
                Transition::Advance
            }
            Some(cur) if cur == next => Transition::Duplicate,
            Some(cur) if cur.is_final() => Transition::Stale,
            Some(_) => {
                self.delivery = Some(next);
                Transition::Advance
            }
        }
    }
}

/// The state of a concatenated message from its parts' states (each part has its own
/// receipt; the sender hears one state):
/// delivered when every part is delivered; failed (with the first failure's kind) as
/// soon as any part finally fails; buffered while some part is buffered and none failed;
/// `None` while nothing decisive is known. Displayed counts as delivered.
pub fn aggregate(parts: &[Option<ReceiptState>]) -> Option<ReceiptState> {
    if parts.is_empty() {
        return None;
    }
    if let Some(f) = parts.iter().flatten().find(|s| s.is_failure()) {
        return Some(*f);
    }
    let delivered = |s: &Option<ReceiptState>| matches!(s, Some(ReceiptState::Delivered | ReceiptState::Displayed));
    if parts.iter().all(delivered) {
        return Some(ReceiptState::Delivered);
    }
    if parts.contains(&Some(ReceiptState::Buffered)) {
        return Some(ReceiptState::Buffered);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::ReceiptState::*;
    use super::*;

    #[test]
    fn forward_only() {
        let mut r = ReceiptRecord::default();
        assert_eq!(r.apply(Buffered), Transition::Advance);
        assert_eq!(r.apply(Buffered), Transition::Duplicate);
        assert_eq!(r.apply(Delivered), Transition::Advance);
        assert_eq!(r.apply(Buffered), Transition::Stale);
        assert_eq!(r.apply(Delivered), Transition::Duplicate);
        assert_eq!(r.apply(Failed), Transition::Stale);
        assert_eq!(r.delivery, Some(Delivered));
        assert_eq!(r.apply(Displayed), Transition::Advance);
        assert_eq!(r.apply(Displayed), Transition::Duplicate);
        assert_eq!(r.delivery, Some(Delivered));
    }

    #[test]
    fn aggregation() {
        assert_eq!(aggregate(&[]), None);
        assert_eq!(aggregate(&[Some(Delivered), Some(Delivered)]), Some(Delivered));
        assert_eq!(aggregate(&[Some(Delivered), None]), None);
        assert_eq!(aggregate(&[Some(Delivered), Some(Buffered)]), Some(Buffered));
        assert_eq!(aggregate(&[None, Some(Failed), Some(Delivered)]), Some(Failed));
        assert_eq!(aggregate(&[Some(Rejected), Some(Failed)]), Some(Rejected));
        assert_eq!(aggregate(&[Some(Displayed), Some(Delivered)]), Some(Delivered));
    }
}
