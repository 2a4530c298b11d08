//! Accounts: creation (first start, `crsd account add`) and the key lookup that signature
//! verification needs. Keys are cached in memory: a lookup per request must not cost a query.

use crate::Service;
use crsd_core::model::Account;
use crsd_core::{Error, Result};
use rand::Rng;
use serde::Serialize;

/// What signature verification needs to know about a SecretId.
#[derive(Debug, Clone)]
pub struct AccountCredentials {
    pub app_id: i64,
    pub uin: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub name: String,
    pub balance: i64,
    /// Given keys (bootstrap from the environment); random ones otherwise.
    pub secret_id: Option<String>,
    pub secret_key: Option<String>,
}

/// Printed once by `crsd account add` and on first start.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub app_id: i64,
    pub uin: String,
    pub secret_id: String,
    pub secret_key: String,
}

const FIRST_APP_ID: i64 = 1_251_000_001;
const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| KEY_ALPHABET[rng.gen_range(0..KEY_ALPHABET.len())] as char)
        .collect()
}

impl Service {
    pub async fn account_count(&self) -> Result<i64> {
        Ok(self.store.count_accounts().await?)
    }

    pub async fn create_account(&self, new: NewAccount) -> Result<Created> {
        if new.balance < 0 {
            return Err(Error::invalid("balance", "must not be negative"));
        }
        let secret_id = new
            .secret_id
            .unwrap_or_else(|| format!("AKID{}", random_string(32)));
        let secret_key = new.secret_key.unwrap_or_else(|| random_string(32));
        if secret_id.is_empty() || secret_key.is_empty() {
            return Err(Error::invalid(
                "secret",
                "SecretId and SecretKey must not be empty",
            ));
        }
        if self.store.account_by_secret_id(&secret_id).await?.is_some() {
            return Err(Error::invalid(
                "secretId",
                "an account with this SecretId exists",
            ));
        }
        let uin = format!(
            "{}",
            rand::thread_rng().gen_range(1_000_000_000i64..4_000_000_000)
        );
        let mut tx = self.store.write().await?;
        let app_id = tx.max_app_id().await?.map_or(FIRST_APP_ID, |m| m + 1);
        let account = Account {
            app_id,
            uin: uin.clone(),
            name: new.name,
            secret_id: secret_id.clone(),
            secret_key: secret_key.clone(),
            balance: new.balance,
        };
        tx.insert_account(&account, self.now()).await?;
        tx.commit().await?;
        Ok(Created {
            app_id,
            uin,
            secret_id,
            secret_key,
        })
    }

    /// The account a SecretId names, for signature verification.
    pub async fn credentials(&self, secret_id: &str) -> Result<AccountCredentials> {
        if let Some(c) = self
            .auth_cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(secret_id)
        {
            return Ok(c.clone());
        }
        let account = self
            .store
            .account_by_secret_id(secret_id)
            .await?
            .ok_or(Error::SecretIdNotFound)?;
        let creds = AccountCredentials {
            app_id: account.app_id,
            uin: account.uin,
            secret_key: account.secret_key,
        };
        self.auth_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(secret_id.to_string(), creds.clone());
        Ok(creds)
    }

    pub async fn balance(&self, app_id: i64) -> Result<i64> {
        Ok(self
            .store
            .account(app_id)
            .await?
            .map(|a| a.balance)
            .unwrap_or(0))
    }
}
