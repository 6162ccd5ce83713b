//! The rota as readers see it: the model and the committed live state. The writer's shell
//! publishes a new state here only after its transaction commits, so the role resolver and
//! the API never see a change that could still roll back.

use std::sync::{Arc, RwLock};

use super::bulk;
use super::model::RotaModel;
use super::state::Live;

/// The committed rota state and the model, shared with readers.
#[derive(Debug)]
pub struct RotaShared {
    pub model: Arc<RotaModel>,
    live: RwLock<Arc<Live>>,
    /// Bulk actions (imports, published plans) run one at a time.
    pub bulk_lock: tokio::sync::Mutex<()>,
    pub bulk: bulk::BulkMetrics,
}

impl RotaShared {
    pub fn new(model: Arc<RotaModel>) -> Arc<Self> {
        Arc::new(RotaShared {
            model,
            live: RwLock::new(Arc::new(Live::default())),
            bulk_lock: tokio::sync::Mutex::new(()),
            bulk: bulk::BulkMetrics::default(),
        })
    }

    /// The committed live state.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Only the shell calls this, after a commit (or once the state is loaded).
    pub(super) fn publish(&self, live: Live) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }
}
