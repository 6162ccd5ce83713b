//! What each simulated device sent: the ledger a run checks the hub's database against.
//! A device numbers its tagged events `<device>/<n>` from 0, so the ledger is a count and
//! the few numbers that were never handed over.

/// What one device task did.
pub(crate) struct Tally {
    pub(crate) device: String,
    /// Sequence numbers 0..next were attempted.
    pub(crate) next: u64,
    /// Attempts that the client refused (not sent).
    pub(crate) failed: Vec<u64>,
}

impl Tally {
    pub(crate) fn new(device: String) -> Self {
        Self {
            device,
            next: 0,
            failed: Vec::new(),
        }
    }
}
