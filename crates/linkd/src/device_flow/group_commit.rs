//! Group commit of new device authorizations: requests that arrive while a
//! commit is under way share the next one.

use crate::store::{DeviceAuthorization, DynStore, StoreError};

/// Most new authorizations committed in one transaction.
const MAX_GROUP: usize = 256;

/// Group commit for new device authorizations: requests that arrive while
/// a commit is under way share the next one, so a burst costs one commit
/// (and on PostgreSQL one round trip) instead of one per request. A lone
/// request is written at once, without waiting for company.
pub struct Inserter {
    queue: tokio::sync::mpsc::Sender<Queued>,
}

struct Queued {
    auth: DeviceAuthorization,
    done: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
}

impl Inserter {
    /// Starts the writer task; it ends when the inserter is dropped.
    pub fn start(store: DynStore) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Queued>(4 * MAX_GROUP);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (auths, waiters): (Vec<_>, Vec<_>) =
                    group.drain(..).map(|q| (q.auth, q.done)).unzip();
                match store.insert_device_authorizations(&auths).await {
                    Ok(stored) => {
                        for (done, stored) in waiters.into_iter().zip(stored) {
                            let _ = done.send(Ok(stored));
                        }
                    }
                    // One bad row (an app deleted a moment ago) must not
                    // fail the others: try each alone.
                    Err(_) if auths.len() > 1 => {
                        for (auth, done) in auths.iter().zip(waiters) {
                            let alone = store
                                .insert_device_authorizations(std::slice::from_ref(auth))
                                .await
                                .map(|stored| stored.first().copied().unwrap_or(false));
                            let _ = done.send(alone);
                        }
                    }
                    Err(e) => {
                        for done in waiters {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Inserter { queue }
    }

    /// Stores `auth`; false when its user code (or device code) is taken.
    pub async fn insert(&self, auth: DeviceAuthorization) -> Result<bool, StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the authorization writer has stopped".into());
        self.queue
            .send(Queued { auth, done })
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}
