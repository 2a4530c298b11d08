//! Accounts: creation (first start, `crsd account add`), the operator's changes (disable,
//! enable, new keys, balance) and the key lookup that signature verification needs.
//!
//! Keys are cached in memory: a lookup per request must not cost a query. The operator's
//! commands run in another process than the daemon, so they cannot empty this cache; instead
//! an entry is trusted for [`AUTH_CACHE_TTL`] and then read again. A disabled account or a
//! replaced key is therefore refused at most that long after the command returns.

use crate::Service;
use crsd_core::model::Account;
use crsd_core::{Error, Result};
use rand::Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long a SecretId's looked-up account is trusted before it is read again: the longest a
/// disabled account or a rotated key still works in a running crsd. One query per SecretId
/// per period, whatever the request rate.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// A cached lookup and when it was made.
#[derive(Debug, Clone)]
pub(crate) struct CachedCredentials {
    creds: AccountCredentials,
    at: Instant,
}

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

    /// The account a SecretId names, for signature verification. A disabled account's
    /// SecretId is refused as one that does not exist (each dialect's authentication error):
    /// its owner learns nothing more from the API than that the key no longer works.
    pub async fn credentials(&self, secret_id: &str) -> Result<AccountCredentials> {
        if let Some(c) = self
            .auth_cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(secret_id)
            .filter(|c| c.at.elapsed() < AUTH_CACHE_TTL)
        {
            return Ok(c.creds.clone());
        }
        let found = self.store.account_record_by_secret_id(secret_id).await?;
        let Some(record) = found.filter(|r| !r.disabled) else {
            self.auth_cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(secret_id);
            return Err(Error::SecretIdNotFound);
        };
        let creds = AccountCredentials {
            app_id: record.account.app_id,
            uin: record.account.uin,
            secret_key: record.account.secret_key,
        };
        self.auth_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                secret_id.to_string(),
                CachedCredentials {
                    creds: creds.clone(),
                    at: Instant::now(),
                },
            );
        Ok(creds)
    }

    /// Every account, disabled ones included (`crsd account list`).
    pub async fn account_records(&self) -> Result<Vec<crsd_store::AccountRecord>> {
        Ok(self.store.account_records().await?)
    }

    /// Disables (`disabled`) or enables account `app_id`: a disabled account's keys are
    /// refused by every API within [`AUTH_CACHE_TTL`]; its instances keep running.
    pub async fn set_account_disabled(&self, app_id: i64, disabled: bool) -> Result<()> {
        let mut tx = self.store.write().await?;
        if !tx.set_account_disabled(app_id, disabled).await? {
            return Err(account_not_found(app_id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives account `app_id` a new random SecretId and SecretKey, returned once; the old
    /// pair is refused by every API within [`AUTH_CACHE_TTL`].
    pub async fn rotate_account_key(&self, app_id: i64) -> Result<Created> {
        let secret_id = format!("AKID{}", random_string(32));
        let secret_key = random_string(32);
        let mut tx = self.store.write().await?;
        let account = tx
            .account(app_id)
            .await?
            .ok_or_else(|| account_not_found(app_id))?;
        tx.set_account_keys(app_id, &secret_id, &secret_key).await?;
        tx.commit().await?;
        Ok(Created {
            app_id,
            uin: account.uin,
            secret_id,
            secret_key,
        })
    }

    /// Sets account `app_id`'s balance to `cents` (not negative); returns the new balance.
    pub async fn set_account_balance(&self, app_id: i64, cents: i64) -> Result<i64> {
        if cents < 0 {
            return Err(Error::invalid("balance", "must not be negative"));
        }
        let mut tx = self.store.write().await?;
        tx.account(app_id)
            .await?
            .ok_or_else(|| account_not_found(app_id))?;
        tx.set_balance(app_id, cents).await?;
        tx.commit().await?;
        Ok(cents)
    }

    /// Adds `cents` (more than zero) to account `app_id`'s balance, read and written in one
    /// transaction so that a purchase at the same moment is not lost; returns the new balance.
    pub async fn top_up_account(&self, app_id: i64, cents: i64) -> Result<i64> {
        if cents <= 0 {
            return Err(Error::invalid("amount", "must be more than zero"));
        }
        let mut tx = self.store.write().await?;
        let account = tx
            .account(app_id)
            .await?
            .ok_or_else(|| account_not_found(app_id))?;
        let balance = account
            .balance
            .checked_add(cents)
            .ok_or_else(|| Error::invalid("amount", "the balance would overflow"))?;
        tx.set_balance(app_id, balance).await?;
        tx.commit().await?;
        Ok(balance)
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

/// No account has this app id (the operator named it).
fn account_not_found(app_id: i64) -> Error {
    Error::invalid("appId", format!("no account {app_id}"))
}
