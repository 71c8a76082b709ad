//! Taking result tags back off bytes they are not about.

use crate::store::Store;
use bucketscan_core::object::ObjectInfo;
use bucketscan_core::seal::{SealSubject, Sealer};
use bucketscan_core::storage::StorageError;
use bucketscan_core::tags::{ResultValues, TagKeys};

/// After tags meant for `meant` went to a key that meanwhile holds other
/// bytes: if the key's current tags are the ones written for `meant` (their
/// seal names `meant`'s bytes, not the current ones), takes the result tags
/// off again — a result must never describe bytes it was not about. `Err`
/// when it could not make sure; the event then comes back, and its next
/// pass finds those tags untrusted and replaces them.
pub async fn take_back(
    store: &dyn Store,
    keys: &TagKeys,
    sealer: &Sealer,
    meant: &ObjectInfo,
    values: &ResultValues,
) -> Result<(), StorageError> {
    for _ in 0..3 {
        let Some(current) = store.current(&meant.bucket, &meant.key).await? else {
            return Ok(());
        };
        let ours = keys.verify(sealer, meant.seal_subject(), &current.tags).is_some()
            || keys
                .verify(
                    sealer,
                    SealSubject {
                        version_id: None,
                        ..meant.seal_subject()
                    },
                    &current.tags,
                )
                .is_some();
        if !ours || keys.result_of(&current.tags) != Some(values.result.as_str()) {
            return Ok(());
        }
        let newer = ObjectInfo {
            bucket: meant.bucket.clone(),
            key: meant.key.clone(),
            version_id: current.version_id.clone(),
            etag: Some(current.etag.clone()),
            ..ObjectInfo::default()
        };
        match store.put_tags(&newer, &keys.foreign(&current.tags)).await? {
            None => {
                tracing::warn!(
                    "{}: result tags of other bytes landed on a newer upload (ETag {}); taken back",
                    meant.url(),
                    current.etag
                );
                return Ok(());
            }
            // Overwritten again while we took them back: look again.
            Some(_) => continue,
        }
    }
    Err(StorageError::Unavailable(format!(
        "{}: the key keeps changing; result tags may sit on bytes they are not about until the event comes back",
        meant.url()
    )))
}
