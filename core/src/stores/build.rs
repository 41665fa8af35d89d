//! Building each kind of store's object_store client from the options:
//! the retry and HTTP client settings every store shares, S3's and
//! Azure's builders with the raw lister beside them (the same client
//! wrapper, the URL object_store derives), and the part policy.

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::HttpConnector;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::base::error::Error;
use crate::stores::checksum::{S3Multipart, UploadChecksum, s3_builder_from_env};
use crate::stores::limits::{PartPolicy, Provider};
use crate::stores::rawlist::{self, RawLister, Signer};
use crate::stores::throttle::Connector;
use crate::stores::{Secret, StoreOptions};

const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub(super) fn retry(opts: &StoreOptions) -> RetryConfig {
    let d = RetryConfig::default();
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: opts.max_retries.unwrap_or(d.max_retries),
        retry_timeout: opts.retry_timeout.unwrap_or(d.retry_timeout),
    }
}

/// Default [`StoreOptions::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn client(opts: &StoreOptions) -> ClientOptions {
    // A request is cut when it stalls, not when it is slow: object_store's
    // default deadline on the whole request (30 s) cuts a part read that
    // the bandwidth cap paces over minutes, and every retry of it too.
    let mut c = ClientOptions::new()
        .with_allow_http(opts.allow_http)
        .with_timeout_disabled()
        .with_read_timeout(opts.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT));
    if let Some(t) = opts.connect_timeout {
        c = c.with_connect_timeout(t);
    }
    c
}

/// An S3 store, its multipart API (each upload sent with the checksum it
/// was created with: see [`checksum`]) and its raw lister.
pub(super) fn s3(
    bucket: &str,
    opts: &StoreOptions,
    connector: Connector,
) -> Result<(Arc<object_store::aws::AmazonS3>, S3Multipart, RawLister), Error> {
    use object_store::aws::AmazonS3ConfigKey as K;
    let invalid = |e: object_store::Error| Error::InvalidUrl {
        url: format!("s3://{bucket}"),
        reason: crate::base::error::error_chain(&e),
    };
    let mut b = s3_builder_from_env()
        .with_bucket_name(bucket)
        .with_retry(retry(opts))
        .with_client_options(client(opts))
        .with_http_connector(connector.clone());
    if let Some(e) = &opts.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &opts.region {
        b = b.with_region(r);
    }
    if let Some(ps) = opts.path_style {
        b = b.with_virtual_hosted_style_request(!ps);
    }
    if let Some(k) = &opts.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = &opts.secret_access_key {
        b = b.with_secret_access_key(&s.0);
    }
    // The bucket's URL as object_store derives it.
    let region = b
        .get_config_value(&K::Region)
        .unwrap_or_else(|| "us-east-1".into());
    let virtual_hosted = b
        .get_config_value(&K::VirtualHostedStyleRequest)
        .is_some_and(|v| v == "true");
    let base = match (b.get_config_value(&K::Endpoint), virtual_hosted) {
        (Some(e), true) => e.trim_end_matches('/').to_owned(),
        (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    let checksum = opts.upload_checksum.unwrap_or_default();
    if opts.signed_payload == Some(false) {
        if checksum == UploadChecksum::Off {
            return Err(Error::InvalidOption(format!(
                "s3://{bucket}: signed-payload = false needs upload-checksum = \"sha256\" or \"crc64nvme\" (with \"none\", nothing would check the bodies uploaded)"
            )));
        }
        b = b.with_unsigned_payload(true);
    }
    let store = Arc::new(
        match checksum.algorithm() {
            Some(a) => b.clone().with_checksum_algorithm(a),
            None => b.clone(),
        }
        .build()
        .map_err(invalid)?,
    );
    let signer = Signer::S3 {
        credentials: Arc::clone(store.credentials()),
        region,
    };
    let mut raw = raw_lister(&connector, opts, signer, base).map_err(invalid)?;
    raw.puts_md5 = opts.upload_checksum.is_none()
        && opts.signed_payload.is_none()
        && rawlist::md5_puts_allowed(&b);
    let multipart = S3Multipart::new(checksum, b, Arc::clone(&store));
    Ok((store, multipart, raw))
}

pub(super) fn azure(
    container: &str,
    opts: &StoreOptions,
    connector: Connector,
) -> Result<(object_store::azure::MicrosoftAzure, RawLister), Error> {
    use object_store::azure::AzureConfigKey as K;
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(retry(opts))
        .with_client_options(client(opts))
        .with_http_connector(connector.clone());
    let mut account = opts.account.clone();
    let mut key = opts.access_key.clone();
    // The account's URL as object_store derives it (None: from the account).
    let mut account_url = None;
    match (&opts.endpoint, opts.emulator) {
        (Some(e), true) => {
            // Azurite on a chosen address: path-style URL with the account.
            let acct = account
                .get_or_insert_with(|| AZURITE_ACCOUNT.to_owned())
                .clone();
            key.get_or_insert_with(|| Secret(AZURITE_KEY.to_owned()));
            let url = format!("{}/{acct}", e.trim_end_matches('/'));
            account_url = Some(url.clone());
            b = b.with_endpoint(url).with_allow_http(true);
        }
        (None, true) => {
            b = b.with_use_emulator(true);
            account_url = Some(format!(
                "{}/{AZURITE_ACCOUNT}",
                std::env::var("AZURITE_BLOB_STORAGE_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:10000".into())
                    .trim_end_matches('/')
            ));
        }
        (Some(e), false) => {
            account_url = Some(e.trim_end_matches('/').to_owned());
            b = b.with_endpoint(e.clone());
        }
        (None, false) => {}
    }
    if let Some(a) = &account {
        b = b.with_account(a);
    }
    if let Some(k) = key {
        b = b.with_access_key(k.0);
    }
    let invalid = |e: object_store::Error| Error::InvalidUrl {
        url: format!("az://{container}"),
        reason: crate::base::error::error_chain(&e),
    };
    let account = b
        .get_config_value(&K::AccountName)
        .or(account)
        .unwrap_or_default();
    let account_url = account_url
        .or_else(|| b.get_config_value(&K::Endpoint))
        .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
    let store = b.build().map_err(invalid)?;
    let signer = Signer::Azure {
        credentials: Arc::clone(store.credentials()),
        account,
    };
    let base = format!("{}/{container}", account_url.trim_end_matches('/'));
    let raw = raw_lister(&connector, opts, signer, base).map_err(invalid)?;
    Ok((store, raw))
}

/// The store's own list requests, through the same HTTP client wrapper
/// (request-rate cap, throttling counts) as its object_store client; the
/// prefix is set once the URL's is known.
fn raw_lister(
    connector: &Connector,
    opts: &StoreOptions,
    signer: Signer,
    base: String,
) -> object_store::Result<RawLister> {
    Ok(RawLister {
        client: connector.connect(&client(opts))?,
        signer,
        base,
        prefix: String::new(),
        encoding: Arc::default(),
        details: false,
        puts_md5: false,
        retry: retry(opts),
    })
}

pub(super) fn policy(provider: Provider, o: &StoreOptions) -> Result<PartPolicy, Error> {
    let mut p = PartPolicy::for_provider(provider);
    if let Some(v) = o.max_parts {
        p.limits.max_parts = v;
    }
    if let Some(v) = o.min_part {
        p.limits.min_part = v;
    }
    if let Some(v) = o.max_part {
        p.limits.max_part = v;
    }
    if let Some(v) = o.part_size {
        // Parts start on 1 KiB boundaries (BLAKE3 chunks; see parthash).
        p.part_size = v.div_ceil(1024) * 1024;
        p.multipart_threshold = v;
    }
    if let Some(v) = o.multipart_threshold {
        p.multipart_threshold = v;
    }
    p.validate()?;
    Ok(p)
}
