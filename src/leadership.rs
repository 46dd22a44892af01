//! Which process runs the background jobs that must run once per store (forwarding now;
//! the reconciler and retention can take the same lease).
//!
//! With sled, one process owns the data folder, so it always leads: [`Leadership::Sole`].
//! With PostgreSQL, replicas share one database and must elect one of them (a session-level
//! advisory lock held on a dedicated connection is the intended mechanism): that store adds
//! a variant here whose `acquire` waits for the lock and whose lease reports its loss when
//! the connection holding it drops, so that another replica takes over when the leader
//! dies. Jobs are written against this seam, not against a store.

/// How this process becomes the one that runs single-instance jobs.
#[derive(Debug, Clone)]
pub enum Leadership {
    /// The only process on its store: leads from the start, never loses it.
    Sole,
}

/// Held while this process leads.
#[derive(Debug)]
pub enum Lease {
    Sole,
}

impl Leadership {
    /// Waits until this process leads.
    pub async fn acquire(&self) -> Lease {
        match self {
            Leadership::Sole => Lease::Sole,
        }
    }
}

impl Lease {
    /// Resolves when leadership is lost; a job then stops at once, since another process
    /// may already have taken over.
    pub async fn lost(&mut self) {
        match self {
            Lease::Sole => std::future::pending().await,
        }
    }
}
