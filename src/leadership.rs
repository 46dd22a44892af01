//! Which process runs the background jobs that must run once per store (forwarding now;
//! the reconciler and retention can take the same lease).
//!
//! With sled, one process owns the data folder, so it always leads: [`Leadership::Sole`].
//! With PostgreSQL, replicas share one database and elect one of them through the store
//! ([`Leadership::Store`]: a session-level advisory lock held on a dedicated connection),
//! whose lease reports its loss when the connection holding it drops, so that another
//! replica takes over when the leader dies. Jobs are written against this seam.

/// How this process becomes the one that runs single-instance jobs.
#[derive(Debug, Clone)]
pub enum Leadership {
    /// The only process on its store: leads from the start, never loses it.
    Sole,
    /// Elected through the store's forwarding lease.
    Store(Box<crate::store::Store>),
}

impl std::fmt::Debug for crate::store::Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Held while this process leads.
pub enum Lease {
    Sole,
    Store(crate::store::Lease),
}

impl Leadership {
    /// Waits until this process leads.
    pub async fn acquire(&self) -> Lease {
        match self {
            Leadership::Sole => Lease::Sole,
            Leadership::Store(store) => Lease::Store(store.lead_forwarding().await),
        }
    }
}

impl Lease {
    /// Resolves when leadership is lost; a job then stops at once, since another process
    /// may already have taken over.
    pub async fn lost(&mut self) {
        match self {
            Lease::Sole => std::future::pending().await,
            Lease::Store(lease) => lease.lost().await,
        }
    }
}
