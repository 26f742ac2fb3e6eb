//! What admission reads of other objects: a pod's namespace (lifecycle and
//! Pod Security labels), its ServiceAccount, PriorityClasses,
//! ResourceQuotas and LimitRanges.
//!
//! Kubernetes' admission plugins read these from informers. Here they come
//! from the watch cache, on one condition: its hub of the collection has
//! applied every write this server made to it ([`Store::last_write`]), so
//! a client whose write (a namespace being deleted, a quota, a label) was
//! acknowledged is never admitted against the state before it. Otherwise,
//! and for an object the cache does not hold (Kubernetes' live lookup: a
//! namespace or ServiceAccount made a moment ago through another server),
//! etcd answers. A pod create used to read etcd six times before its write.
//!
//! [`Store::last_write`]: crate::storage::store::Store::last_write

use crate::kinds::Resource;
use crate::registry::Registry;
use crate::status::ApiResult;
use crate::storage::store::{self, Stored};

impl Registry {
    /// The object of `r` at `key`, for admission.
    pub(super) async fn admission_get(&self, r: &'static Resource, key: &str) -> ApiResult<Option<Stored>> {
        let written = self.store.last_write(&store::collection_prefix(r, None));
        match self.watch_cache.current_object(&self.store, r, key, written).await {
            Some(found) => Ok(Some(found)),
            None => self.store.get(key).await,
        }
    }

    /// The objects of `r` under `prefix` (one namespace of it, or all), for
    /// admission.
    pub(super) async fn admission_list(&self, r: &'static Resource, prefix: &str) -> ApiResult<Vec<Stored>> {
        let written = self.store.last_write(&store::collection_prefix(r, None));
        match self.watch_cache.current_list(&self.store, r, prefix, written).await {
            Some(held) => Ok(held),
            None => self.store.list(prefix).await,
        }
    }
}
