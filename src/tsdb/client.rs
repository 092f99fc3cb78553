//! The HTTP side of InfluxDB: one reqwest client for both write APIs.
//!
//! - v2: `POST {url}/api/v2/write?org=&bucket=&precision=ns`,
//!   `Authorization: Token …` — InfluxDB 2.x, 3.x, Cloud (and VictoriaMetrics).
//! - v1: `POST {url}/write?db=&rp=&precision=ns`, Basic auth when a user is
//!   set — InfluxDB 1.x and the v1 compatibility API of 2.x/3.x;
//!   `CREATE DATABASE` through `/query`.
//!
//! Bodies are gzip-compressed (`Content-Encoding: gzip`) unless turned off.
//! The `influxdb2` crate was left out: it has no v1 API, takes its own point
//! type rather than the line protocol already in the spool, and hides the
//! status and `Retry-After` the retry decision needs.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;

use super::retry::Outcome;
use crate::config::{InfluxApi, InfluxSection};

/// A configured InfluxDB endpoint.
#[derive(Clone)]
pub struct InfluxClient {
    http: reqwest::Client,
    api: InfluxApi,
    write_url: Url,
    /// v1 only: `/query`, for `CREATE DATABASE`.
    query_url: Url,
    database: String,
    /// The database InfluxQL reads: v1 `database`; v2 the bucket (through
    /// the v1-compatible `/query`, which needs a DBRP mapping on 2.x).
    query_db: String,
    auth: Option<String>,
    basic: Option<(String, String)>,
    gzip: bool,
}

impl std::fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or password.
        f.debug_struct("InfluxClient")
            .field("api", &self.api)
            .field("write_url", &self.write_url.as_str())
            .finish()
    }
}

impl InfluxClient {
    /// `None` when `influxdb.url` is empty (spool only).
    pub fn new(c: &InfluxSection) -> Result<Option<Self>, String> {
        if c.url.is_empty() {
            return Ok(None);
        }
        let base = Url::parse(c.url.trim_end_matches('/')).map_err(|e| format!("influxdb.url: {e}"))?;
        let join = |path: &str| {
            let mut u = base.clone();
            let prefix = u.path().trim_end_matches('/').to_string();
            u.set_path(&format!("{prefix}{path}"));
            u
        };
        let mut write_url;
        let (mut auth, mut basic) = (None, None);
        match c.api {
            InfluxApi::V2 => {
                write_url = join("/api/v2/write");
                write_url
                    .query_pairs_mut()
                    .append_pair("org", &c.org)
                    .append_pair("bucket", &c.bucket)
                    .append_pair("precision", "ns");
                if !c.token.is_empty() {
                    auth = Some(format!("Token {}", c.token.expose()));
                }
            }
            InfluxApi::V1 => {
                write_url = join("/write");
                {
                    let mut q = write_url.query_pairs_mut();
                    q.append_pair("db", &c.database);
                    if !c.retention_policy.is_empty() {
                        q.append_pair("rp", &c.retention_policy);
                    }
                    q.append_pair("precision", "ns");
                }
                if !c.username.is_empty() {
                    basic = Some((c.username.clone(), c.password.expose().to_string()));
                }
            }
        }
        let http = reqwest::Client::builder()
            .timeout(c.timeout.get())
            .connect_timeout(c.timeout.get().min(std::time::Duration::from_secs(5)))
            .user_agent(concat!("floodguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Some(InfluxClient {
            http,
            api: c.api,
            write_url,
            query_url: join("/query"),
            database: c.database.clone(),
            query_db: match c.api {
                InfluxApi::V1 => c.database.clone(),
                InfluxApi::V2 => c.bucket.clone(),
            },
            auth,
            basic,
            gzip: c.gzip,
        }))
    }

    pub fn api(&self) -> InfluxApi {
        self.api
    }

    /// The write endpoint without credentials, for logs.
    pub fn endpoint(&self) -> &str {
        self.write_url.as_str()
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = match &self.auth {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        };
        match &self.basic {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// Sends one batch of line protocol.
    pub async fn write(&self, body: &[u8]) -> Outcome {
        let mut req =
            self.http.post(self.write_url.clone()).header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if self.gzip {
            let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            // Writing to a Vec cannot fail.
            let _ = enc.write_all(body);
            req = req.header(CONTENT_ENCODING, "gzip").body(enc.finish().unwrap_or_default());
        } else {
            req = req.body(body.to_vec());
        }
        send(self.authorize(req)).await
    }

    /// v1: `CREATE DATABASE` (idempotent in InfluxDB).
    /// Runs an InfluxQL query (`/query`, answered in chunks with epoch-ns
    /// times); the body, or why it failed.
    pub async fn query(&self, q: &str) -> Result<String, String> {
        let form = [("db", self.query_db.as_str()), ("q", q), ("epoch", "ns"), ("chunked", "true")];
        let resp = self
            .authorize(self.http.post(self.query_url.clone()).form(&form))
            .send()
            .await
            .map_err(|e| format!("InfluxDB query: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| format!("InfluxDB query: {e}"))?;
        if !status.is_success() {
            return Err(format!("InfluxDB query: {status}: {}", body.trim()));
        }
        Ok(body)
    }

    pub async fn create_database(&self) -> Outcome {
        let q = format!("CREATE DATABASE \"{}\"", self.database.replace('\\', "\\\\").replace('"', "\\\""));
        send(self.authorize(self.http.post(self.query_url.clone()).form(&[("q", q)]))).await
    }
}

async fn send(req: reqwest::RequestBuilder) -> Outcome {
    match req.send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let retry_after =
                resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = resp.text().await.unwrap_or_default();
            Outcome::Status { code, retry_after, body }
        }
        Err(e) if e.is_timeout() => Outcome::Timeout,
        Err(e) => Outcome::Connection(error_chain(&e)),
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn v2_url_carries_org_bucket_and_precision() {
        let c = InfluxSection {
            url: "http://127.0.0.1:8428/".into(),
            token: Secret::new("t"),
            ..Default::default()
        };
        let client = InfluxClient::new(&c).unwrap().unwrap();
        assert_eq!(
            client.endpoint(),
            "http://127.0.0.1:8428/api/v2/write?org=flood&bucket=flood&precision=ns"
        );
        assert_eq!(client.auth.as_deref(), Some("Token t"));
        assert!(!format!("{client:?}").contains("Token"));
    }

    #[test]
    fn v1_url_carries_db_and_rp_under_a_path_prefix() {
        let c = InfluxSection {
            url: "http://h:8086/influx".into(),
            api: InfluxApi::V1,
            database: "flood db".into(),
            retention_policy: "autogen".into(),
            ..Default::default()
        };
        let client = InfluxClient::new(&c).unwrap().unwrap();
        assert_eq!(client.endpoint(), "http://h:8086/influx/write?db=flood+db&rp=autogen&precision=ns");
        assert_eq!(client.query_url.as_str(), "http://h:8086/influx/query");
    }

    #[test]
    fn an_empty_url_means_spool_only() {
        let c = InfluxSection { url: String::new(), ..Default::default() };
        assert!(InfluxClient::new(&c).unwrap().is_none());
    }
}
