//! What operators do to links, shared by the internal API and the console.

use super::{ConsentService, FlowError, is_account_id};
use crate::storage::Link;

impl ConsentService {
    /// Marks an account unlinked. `None` if it was never linked.
    pub async fn unlink(&self, account_id: &str) -> Result<Option<Link>, FlowError> {
        if !is_account_id(account_id) {
            return Err(FlowError::BadAccountId);
        }
        let now = crate::clock::unix_ms(self.clock.now());
        Ok(self.store.unlink(account_id.to_owned(), now).await?)
    }
}
