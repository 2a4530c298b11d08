//! `crsd tls init`: a private certificate authority and a server certificate it signs, for an
//! operator without certificates of their own.
//!
//! Why a CA and not a self-signed server certificate: the clients are told to trust the CA once
//! (tccli through certifi's bundle, the SDKs through a CA file), and a new server certificate
//! (another name, a renewal) needs nothing new on their side. Keys are ECDSA P-256 (rcgen's
//! default), written 0600; the certificates 0644. Existing files are never overwritten unless
//! asked to.

use anyhow::{bail, Context, Result};
use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The files `init` writes.
#[derive(Debug, Clone)]
pub struct Made {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub names: Vec<String>,
}

/// The names a certificate is made for by default: loopback, and the host names the API is
/// reached by (`api.public_hosts`), then the ones given; each once.
pub fn names(public_hosts: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_string)
        .chain(public_hosts.iter().cloned())
        .chain(extra.iter().cloned())
    {
        let n = n.trim().to_string();
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Makes `dir`/ca.pem, ca.key, cert.pem and key.pem: the CA valid for ten years, the server
/// certificate for `days`, for `names` (IP addresses as such, the rest as DNS names).
pub fn init(dir: &Path, names: &[String], days: u32, force: bool) -> Result<Made> {
    if names.is_empty() {
        bail!("no name to make the certificate for");
    }
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let made = Made {
        ca: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        names: names.to_vec(),
    };
    if !force {
        for f in [&made.ca, &made.ca_key, &made.cert, &made.key] {
            if f.exists() {
                bail!(
                    "{} exists; give --force to make new ones (clients that trust the old CA \
                     must then be told the new one)",
                    f.display()
                );
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let today = chrono::Utc::now().date_naive();
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let yesterday = today - chrono::Days::new(1);

    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.distinguished_name
        .push(DnType::CommonName, "crsd private CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = ymd(yesterday);
    ca.not_after = ymd(today + chrono::Days::new(3650));
    let ca_key = KeyPair::generate().context("CA key")?;
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;

    let mut server = CertificateParams::new(names.to_vec()).context("certificate names")?;
    server
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = ymd(yesterday);
    server.not_after = ymd(today + chrono::Days::new(u64::from(days)));
    let key = KeyPair::generate().context("server key")?;
    let cert = server
        .signed_by(&key, &ca_cert, &ca_key)
        .context("signing the server certificate")?;

    write(&made.ca_key, &ca_key.serialize_pem(), 0o600)?;
    write(&made.key, &key.serialize_pem(), 0o600)?;
    write(&made.ca, &ca_cert.pem(), 0o644)?;
    write(&made.cert, &cert.pem(), 0o644)?;
    Ok(made)
}

/// What to put in crsd.toml and how each client comes to trust the CA.
pub fn instructions(made: &Made) -> String {
    let ca = made.ca.display();
    format!(
        "Made a private CA and a certificate for {names}.\n\
         \x20 CA:          {ca} (its key {ca_key}, 0600: keep it safe, or delete it once no new \
         certificate is needed)\n\
         \x20 certificate: {cert}, key {key} (0600)\n\
         \n\
         In crsd.toml:\n\
         \x20 [tls]\n\
         \x20 cert = \"{cert}\"\n\
         \x20 key = \"{key}\"\n\
         \x20 listen = \"127.0.0.1:9443\"   # HTTPS beside the HTTP `listen`; leave it out to make `listen` HTTPS\n\
         \n\
         Make the clients trust the CA:\n\
         \x20 tencentcloud-sdk-python: HttpProfile(endpoint=\"HOST:PORT\", certification=\"{ca}\")\n\
         \x20 tccli (it ignores REQUESTS_CA_BUNDLE and SSL_CERT_FILE and trusts only certifi's bundle),\n\
         \x20   with the python of tccli's installation:\n\
         \x20   cat {ca} >> \"$(python3 -c 'import certifi; print(certifi.where())')\"\n\
         \x20   then: tccli redis DescribeInstances --endpoint HOST:PORT\n\
         \x20 qcloudapi-sdk-python (v2): SSL_CERT_FILE={ca}\n\
         \x20 cds-python-sdk (Capital Online): HttpProfile(..., certification=\"{ca}\")\n\
         \x20 curl: --cacert {ca}\n",
        names = made.names.join(", "),
        ca_key = made.ca_key.display(),
        cert = made.cert.display(),
        key = made.key.display(),
    )
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_loopback_public_hosts_and_given_each_once() {
        let n = names(
            &["redis.api.qcloud.com".into()],
            &["crsd.example".into(), "localhost".into(), " ".into()],
        );
        assert_eq!(
            n,
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "redis.api.qcloud.com",
                "crsd.example"
            ]
        );
    }

    #[test]
    fn makes_private_keys_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let made = init(dir.path(), &names(&[], &[]), 30, false).unwrap();
        for (f, mode) in [
            (&made.ca_key, 0o600),
            (&made.key, 0o600),
            (&made.ca, 0o644),
            (&made.cert, 0o644),
        ] {
            let m = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{}", f.display());
        }
        assert!(std::fs::read_to_string(&made.cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let again = init(dir.path(), &names(&[], &[]), 30, false);
        assert!(again.is_err(), "existing files are kept");
        init(dir.path(), &names(&[], &[]), 30, true).expect("--force makes new ones");
        assert!(instructions(&made).contains("certifi.where()"));
    }
}
