//! What `crsd serve` prints on standard output for the person who started it: the first
//! account's keys, once, the moment the account is made; and on every start, where the API
//! is, where the keys are kept, and lines to paste into tccli, the Python SDK and redis-cli.
//!
//! The keys are printed only by the start that makes the account (even if binding the
//! listener fails right after); every later start names the file that holds them
//! (`credentials.json`, 0600) and prints placeholders instead.

use crsd_service::accounts_created::Created;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

/// The region tccli and the SDKs must name; crsd answers for any.
const REGION: &str = "ap-guangzhou";

/// The first account, labelled, with where its keys are kept.
pub fn first_account(created: &Created, credentials: &Path) -> String {
    format!(
        "crsd made its first account; its keys are shown this once (also in {}, mode 0600):\n\
         \x20 AppId:     {}\n\
         \x20 SecretId:  {}\n\
         \x20 SecretKey: {}\n",
        credentials.display(),
        created.app_id,
        created.secret_id,
        created.secret_key
    )
}

/// Where things are and how to reach them. `api`: the main listener and whether it speaks
/// HTTPS; `https`: an HTTPS listener beside it. `keys`: the first account's (SecretId,
/// SecretKey) on the start that made it, else `None` (placeholders).
pub fn next_steps(
    api: SocketAddr,
    tls: bool,
    https: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    credentials: &Path,
    keys: Option<(&str, &str)>,
) -> String {
    let (id, key) = keys.unwrap_or(("<SecretId>", "<SecretKey>"));
    let scheme = if tls { "https" } else { "http" };
    let mut out = String::new();
    let _ = writeln!(out, "crsd is ready.");
    let _ = writeln!(
        out,
        "  API:         {scheme}://{api}  (v2: /v2/index.php, API 3.0: /, Capital Online: /redis)"
    );
    if let Some(h) = https {
        let _ = writeln!(out, "  API (HTTPS): https://{h}");
    }
    let _ = writeln!(
        out,
        "  Keys:        {} (the first account; `crsd account list` for all)",
        credentials.display()
    );
    if let Some(m) = metrics {
        let _ = writeln!(
            out,
            "  Metrics:     http://{m}/metrics, nodes for Prometheus at http://{m}/sd/nodes"
        );
    }
    let _ = writeln!(out, "\nMake an instance with tccli:");
    let _ = writeln!(
        out,
        "  tccli configure set secretId {id} secretKey {key} region {REGION}"
    );
    // tccli has no scheme option: an endpoint with `http://` is used as the URL as it is.
    let endpoint = if tls {
        format!("{api}")
    } else {
        format!("http://{api}")
    };
    let _ = writeln!(
        out,
        "  tccli redis CreateInstances --endpoint {endpoint} --TypeId 17 --MemSize 1024 \
         --GoodsNum 1 --Period 1 --BillingMode 1 --ZoneId 100002 --Password 'Redis2026!'"
    );
    let _ = writeln!(
        out,
        "  tccli redis DescribeInstances --endpoint {endpoint}    # WanIp and Port of each"
    );
    let _ = writeln!(out, "\nOr from Python (tencentcloud-sdk-python):");
    let _ = writeln!(
        out,
        "  from tencentcloud.common import credential\n\
         \x20 from tencentcloud.common.profile.client_profile import ClientProfile\n\
         \x20 from tencentcloud.common.profile.http_profile import HttpProfile\n\
         \x20 from tencentcloud.redis.v20180412 import redis_client, models\n\
         \x20 c = redis_client.RedisClient(credential.Credential(\"{id}\", \"{key}\"), \"{REGION}\",\n\
         \x20     ClientProfile(httpProfile=HttpProfile(endpoint=\"{api}\", protocol=\"{scheme}\")))\n\
         \x20 print(c.DescribeInstances(models.DescribeInstancesRequest()).to_json_string())"
    );
    let _ = writeln!(out, "\nThen connect to an instance:");
    let _ = writeln!(out, "  redis-cli -h <WanIp> -p <Port> -a 'Redis2026!'");
    if tls || https.is_some() {
        let _ = writeln!(
            out,
            "\nOver HTTPS the clients must trust crsd's certificate: `crsd tls init` printed how \
             (and README says so under TLS)."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Created {
        Created {
            app_id: 1251000001,
            uin: "100000000001".into(),
            secret_id: "AKIDbanner".into(),
            secret_key: "banner-secret".into(),
        }
    }

    #[test]
    fn the_first_account_is_labelled() {
        let text = first_account(&created(), Path::new("data/credentials.json"));
        assert!(text.contains("SecretId:  AKIDbanner"), "{text}");
        assert!(text.contains("SecretKey: banner-secret"), "{text}");
        assert!(text.contains("data/credentials.json"), "{text}");
    }

    #[test]
    fn later_starts_show_placeholders_not_keys() {
        let api: SocketAddr = "127.0.0.1:9750".parse().unwrap();
        let text = next_steps(
            api,
            false,
            Some("127.0.0.1:9443".parse().unwrap()),
            None,
            Path::new("d/credentials.json"),
            None,
        );
        assert!(text.contains("https://127.0.0.1:9443"), "{text}");
        assert!(
            text.contains("secretId <SecretId> secretKey <SecretKey>"),
            "{text}"
        );
        assert!(text.contains("--endpoint http://127.0.0.1:9750"), "{text}");
        assert!(text.contains("d/credentials.json"), "{text}");
        let first = next_steps(
            api,
            true,
            None,
            Some("127.0.0.1:9751".parse().unwrap()),
            Path::new("d/credentials.json"),
            Some(("AKIDx", "k")),
        );
        assert!(first.contains("secretId AKIDx secretKey k"), "{first}");
        assert!(first.contains("--endpoint 127.0.0.1:9750 "), "{first}");
        assert!(first.contains("protocol=\"https\""), "{first}");
        assert!(first.contains("/sd/nodes"), "{first}");
    }
}
