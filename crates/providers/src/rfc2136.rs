//! RFC 2136 dynamic updates with TSIG (RFC 8945), listing by AXFR: the provider for BIND, Knot,
//! PowerDNS and any other primary that speaks DNS UPDATE.
//!
//! Decisions worth knowing before changing anything here:
//!
//! * **Every change carries prerequisites**, so that data another party wrote meanwhile is never
//!   overwritten: a create requires its RRset to be absent (and, for CNAME, the whole name to be
//!   unused; otherwise no CNAME at the name); an update and a delete require the old RRset to
//!   hold exactly the old values. RFC 2136 servers silently ignore some conflicting additions
//!   (a CNAME next to other data, §3.4.2.2), so without prerequisites a conflict would be
//!   reported as success.
//! * **Batches are atomic on the server and sequential here.** Prerequisites of one message are
//!   all checked before any of its updates, so two changes touching the same RRset (or the same
//!   name when a CNAME is involved) never share a message; the batch is cut there instead.
//! * **A refused batch is bisected** until the refused change(s) are isolated; the others are
//!   applied. Authentication failures and unreachable servers are not bisected: they affect every
//!   change alike, so the remaining batches are not even sent.
//! * **Listing drops the SOA and the apex NS RRset**: both belong to the server's zone
//!   configuration, not to extdns, and planning them would only ever produce changes the
//!   server refuses. NS RRsets below the apex (delegations) are listed.
//! * **TSIG MACs are computed with the RustCrypto `hmac` crate** over the to-be-signed bytes that
//!   hickory-proto builds (`message_tbs`, `signed_bitmessage_to_buf`). hickory's own `TSigner`
//!   only implements hmac-sha256/384/512, and hmac-sha1/sha224 keys are still common on BIND
//!   installations.
//! * Error responses are taken at face value; only a success must be authenticated. A forged
//!   error can do no more harm than a dropped packet, a forged success could hide a failure.
//! * **NOTAUTH, REFUSED and TSIG errors mean the key was not accepted** (`AuthFailed`), with one
//!   exception: a REFUSED that the server signed with our key comes from a server that accepted
//!   the key and refuses the content (BIND's check-mx, an update-policy not covering the name),
//!   so it is bisected like any other refusal.
//! * **Transport**: UDP for requests up to 1232 bytes, TCP above that and when an answer is
//!   truncated; zone transfers always over TCP. The timeout bounds every exchange and every
//!   message of a transfer; a stopped server on the same host fails at once (ECONNREFUSED).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{
    make_tsig_record, message_tbs, signed_bitmessage_to_buf, TsigAlgorithm as WireTsigAlgorithm, TsigError, TSIG,
};
use hickory_proto::rr::rdata::{self, A, AAAA, CAA, MX, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType};
use hmac::{Hmac, Mac};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use extdns_core::endpoint::{normalize_name, Endpoint, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

/// external-dns' `--rfc2136-batch-change-size` default.
pub const DEFAULT_BATCH_SIZE: usize = 50;
pub const DEFAULT_TTL: u32 = 300;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request sent over UDP with the `Udp` transport. Larger ones go over TCP: 1232 bytes is
/// the DNS Flag Day 2020 size that avoids IP fragmentation on any path.
const MAX_UDP_REQUEST: usize = 1232;
/// Allowed clock skew between us and the server for TSIG, as BIND's and Knot's defaults.
const TSIG_FUDGE: u16 = 300;
/// RFC 8945 §5.3.1: a signed message must follow at most 99 unsigned ones in a TCP stream.
const MAX_UNSIGNED_IN_A_ROW: usize = 99;
/// RFC 1035 §4.2.2: TCP messages carry a 16-bit length.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// Room kept in a message for the TSIG record added when it is signed.
const TSIG_RECORD_MAX: usize = 400;
/// RFC 1035 §3.3: a character-string holds at most 255 bytes.
const MAX_CHARACTER_STRING: usize = 255;

/// TSIG MAC algorithms; external-dns' `--rfc2136-tsig-secret-alg` spelling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TsigAlgorithm {
    HmacSha1,
    HmacSha224,
    #[default]
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha1 => "hmac-sha1",
            TsigAlgorithm::HmacSha224 => "hmac-sha224",
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn wire(self) -> WireTsigAlgorithm {
        match self {
            TsigAlgorithm::HmacSha1 => WireTsigAlgorithm::HmacSha1,
            TsigAlgorithm::HmacSha224 => WireTsigAlgorithm::HmacSha224,
            TsigAlgorithm::HmacSha256 => WireTsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => WireTsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => WireTsigAlgorithm::HmacSha512,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            TsigAlgorithm::HmacSha1 => hmac_sign::<Hmac<sha1::Sha1>>(key, data),
            TsigAlgorithm::HmacSha224 => hmac_sign::<Hmac<sha2::Sha224>>(key, data),
            TsigAlgorithm::HmacSha256 => hmac_sign::<Hmac<sha2::Sha256>>(key, data),
            TsigAlgorithm::HmacSha384 => hmac_sign::<Hmac<sha2::Sha384>>(key, data),
            TsigAlgorithm::HmacSha512 => hmac_sign::<Hmac<sha2::Sha512>>(key, data),
        }
    }

    /// Constant time; a MAC of the wrong length (truncated, RFC 8945 §5.2.2.1) does not verify.
    fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        match self {
            TsigAlgorithm::HmacSha1 => hmac_verify::<Hmac<sha1::Sha1>>(key, data, tag),
            TsigAlgorithm::HmacSha224 => hmac_verify::<Hmac<sha2::Sha224>>(key, data, tag),
            TsigAlgorithm::HmacSha256 => hmac_verify::<Hmac<sha2::Sha256>>(key, data, tag),
            TsigAlgorithm::HmacSha384 => hmac_verify::<Hmac<sha2::Sha384>>(key, data, tag),
            TsigAlgorithm::HmacSha512 => hmac_verify::<Hmac<sha2::Sha512>>(key, data, tag),
        }
    }
}

fn hmac_sign<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <M as Mac>::new_from_slice(key).map_err(|e| format!("TSIG key unusable: {e}"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn hmac_verify<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    match <M as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TsigAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().trim_end_matches('.');
        [
            TsigAlgorithm::HmacSha1,
            TsigAlgorithm::HmacSha224,
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(wanted))
        .ok_or_else(|| {
            format!("unsupported TSIG algorithm {s:?}, expected one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512")
        })
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct TsigConfig {
    pub key_name: String,
    pub algorithm: TsigAlgorithm,
    /// Base64, as `tsig-keygen` prints it.
    pub secret: String,
}

/// Keeps the secret out of logs and error messages.
impl fmt::Debug for TsigConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigConfig")
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// UDP for small messages, TCP for large ones and when an answer comes back truncated.
    /// Zone transfers always use TCP.
    #[default]
    Udp,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rfc2136Config {
    /// Host name or IP address of the primary server.
    pub host: String,
    pub port: u16,
    /// Zones this provider may list and change.
    pub zones: Vec<String>,
    pub tsig: Option<TsigConfig>,
    pub transport: Transport,
    /// TTLs below this are raised to it.
    pub min_ttl: Option<u32>,
    /// Most changes in one UPDATE message.
    pub batch_size: usize,
    /// Bound on every exchange with the server (and on each message of a zone transfer).
    pub timeout: Duration,
    /// TTL of records whose endpoint has none.
    pub default_ttl: u32,
}

impl Rfc2136Config {
    pub fn new(host: impl Into<String>, port: u16, zones: Vec<String>) -> Self {
        Rfc2136Config {
            host: host.into(),
            port,
            zones,
            tsig: None,
            transport: Transport::Udp,
            min_ttl: None,
            batch_size: DEFAULT_BATCH_SIZE,
            timeout: DEFAULT_TIMEOUT,
            default_ttl: DEFAULT_TTL,
        }
    }
}

/// A TSIG key ready for use: decoded secret, parsed name.
#[derive(Clone)]
struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl TsigKey {
    fn from_config(c: &TsigConfig) -> Result<Self, ProviderError> {
        let mut name = Name::from_ascii(c.key_name.trim())
            .map_err(|e| ProviderError::Config(format!("TSIG key name {:?} is not a DNS name: {e}", c.key_name)))?;
        name.set_fqdn(true);
        let secret = base64::engine::general_purpose::STANDARD.decode(c.secret.trim()).map_err(|e| {
            ProviderError::Config(format!("TSIG secret of key {:?} is not valid base64: {e}", c.key_name))
        })?;
        if secret.is_empty() {
            return Err(ProviderError::Config(format!("TSIG secret of key {:?} is empty", c.key_name)));
        }
        Ok(TsigKey { name, algorithm: c.algorithm, secret })
    }

    fn display_name(&self) -> String {
        self.name.to_ascii().trim_end_matches('.').to_string()
    }

    /// Signs `msg` in place and returns its MAC, which the response's MAC covers.
    fn sign(&self, msg: &mut Message, now: u64) -> Result<Vec<u8>, String> {
        let stub = TSIG::new(self.algorithm.wire(), now, TSIG_FUDGE, Vec::new(), msg.metadata.id, None, Vec::new());
        let tbs =
            message_tbs(&*msg, &stub, &self.name).map_err(|e| format!("encoding the message to sign failed: {e}"))?;
        let mac = self.algorithm.mac(&self.secret, &tbs)?;
        msg.set_signature(Box::new(make_tsig_record(self.name.clone(), stub.set_mac(mac.clone()))));
        Ok(mac)
    }
}

/// Verifies the responses to one signed request, including every message of a zone transfer
/// (RFC 8945 §5.3.1: each MAC chains on the previous one and covers unsigned messages between).
struct ResponseVerifier<'k> {
    key: &'k TsigKey,
    previous_mac: Vec<u8>,
    unsigned: Vec<u8>,
    unsigned_count: usize,
    first: bool,
}

impl<'k> ResponseVerifier<'k> {
    fn new(key: &'k TsigKey, request_mac: Vec<u8>) -> Self {
        ResponseVerifier { key, previous_mac: request_mac, unsigned: Vec::new(), unsigned_count: 0, first: true }
    }

    fn verify(&mut self, raw: &[u8], msg: &Message, now: u64) -> Result<(), String> {
        let Some(sig) = msg.signature() else {
            if self.first {
                return Err("the response is not signed".into());
            }
            self.unsigned_count += 1;
            if self.unsigned_count > MAX_UNSIGNED_IN_A_ROW {
                return Err(format!("more than {MAX_UNSIGNED_IN_A_ROW} unsigned messages in a row"));
            }
            self.unsigned.extend_from_slice(raw);
            return Ok(());
        };
        if sig.name != self.key.name {
            return Err(format!("the response is signed with key {}", sig.name.to_ascii()));
        }
        let algorithm = sig.data.algorithm.to_name().to_ascii().to_ascii_lowercase();
        if algorithm.trim_end_matches('.') != self.key.algorithm.as_str() {
            return Err(format!("the response is signed with algorithm {algorithm}"));
        }
        if let Some(err) = sig.data.error {
            return Err(format!("the response carries TSIG error {}", tsig_error_name(err)));
        }
        let (body, _) = signed_bitmessage_to_buf(raw, None, self.first)
            .map_err(|e| format!("the signed response could not be decoded: {e}"))?;
        let mut tbs = Vec::with_capacity(2 + self.previous_mac.len() + self.unsigned.len() + body.len());
        tbs.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
        tbs.extend_from_slice(&self.previous_mac);
        tbs.extend_from_slice(&self.unsigned);
        tbs.extend_from_slice(&body);
        if !self.key.algorithm.verify(&self.key.secret, &tbs, &sig.data.mac) {
            return Err("the response's TSIG MAC does not verify".into());
        }
        let fudge = u64::from(sig.data.fudge);
        if now + fudge < sig.data.time || now > sig.data.time + fudge {
            return Err(format!(
                "the response was signed at {} but our clock says {now} (fudge {fudge}s); check clocks",
                sig.data.time
            ));
        }
        self.previous_mac = sig.data.mac.clone();
        self.unsigned.clear();
        self.unsigned_count = 0;
        self.first = false;
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.unsigned_count > 0 {
            return Err("the last message of the transfer is not signed".into());
        }
        Ok(())
    }
}

fn tsig_error_name(e: TsigError) -> String {
    match e {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
    }
}

fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// What an rcode means for an UPDATE, in words a user can act on.
fn rcode_hint(rc: ResponseCode) -> &'static str {
    match rc {
        ResponseCode::YXRRSet => "the RRset already exists, or a CNAME is in the way",
        ResponseCode::NXRRSet => "the RRset does not hold the expected values (changed or deleted by someone else)",
        ResponseCode::YXDomain => "the name already holds other records, which a CNAME cannot join",
        ResponseCode::NXDomain => "the name does not exist",
        ResponseCode::NotZone => "the name is not in the zone",
        ResponseCode::FormErr => "the server could not parse the change",
        ResponseCode::ServFail => "the server failed to apply it",
        ResponseCode::NotImp => "the server does not implement this",
        ResponseCode::Refused => {
            "the server's policy forbids it (BIND refuses MX/SRV targets in the zone without address records, \
             and names an update-policy does not grant to the key)"
        }
        _ => "refused by the server",
    }
}

/// Why an exchange produced no usable answer.
#[derive(Debug)]
enum ExchangeError {
    Unreachable(String),
    /// Credentials refused, or an answer that fails authentication.
    Auth(String),
    /// The server answered with this non-success rcode (taken at face value).
    Rcode(ResponseCode, String),
    /// The request does not fit in one DNS message; never sent.
    TooLarge(String),
}

/// One change translated to DNS UPDATE sections.
#[derive(Clone, Debug)]
struct PreparedChange {
    index: usize,
    describe: String,
    prerequisites: Vec<Record>,
    updates: Vec<Record>,
    /// Lower-cased owner name and type of every RRset the change reads or writes.
    touches: Vec<(String, RecordType)>,
}

impl PreparedChange {
    /// Two changes conflict when their prerequisites would be checked against a zone that the
    /// other one is about to change.
    fn conflicts_with(&self, other: &PreparedChange) -> bool {
        self.touches.iter().any(|(name, rt)| {
            other.touches.iter().any(|(oname, ort)| {
                name == oname && (rt == ort || *rt == RecordType::CNAME || *ort == RecordType::CNAME)
            })
        })
    }
}

/// Provider for DNS servers that accept RFC 2136 updates and allow AXFR of their zones.
#[derive(Clone)]
pub struct Rfc2136Provider {
    config: Rfc2136Config,
    zones: Vec<Zone>,
    tsig: Option<TsigKey>,
}

impl fmt::Debug for Rfc2136Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136Provider").field("config", &self.config).finish()
    }
}

impl Rfc2136Provider {
    pub fn new(config: Rfc2136Config) -> Result<Self, ProviderError> {
        if config.host.trim().is_empty() {
            return Err(ProviderError::Config("RFC2136 host is empty".into()));
        }
        if config.zones.is_empty() {
            return Err(ProviderError::Config("RFC2136 provider has no zones".into()));
        }
        if config.batch_size == 0 {
            return Err(ProviderError::Config("RFC2136 batch size must be at least 1".into()));
        }
        if config.timeout.is_zero() {
            return Err(ProviderError::Config("RFC2136 timeout must be positive".into()));
        }
        let mut zones = Vec::new();
        for z in &config.zones {
            extdns_core::endpoint::validate_name("zones", z)
                .map_err(|e| ProviderError::Config(format!("RFC2136 zone {z:?} is invalid: {e}")))?;
            let zone = Zone::named(z);
            if !zones.contains(&zone) {
                zones.push(zone);
            }
        }
        let tsig = config.tsig.as_ref().map(TsigKey::from_config).transpose()?;
        Ok(Rfc2136Provider { config, zones, tsig })
    }

    pub fn config(&self) -> &Rfc2136Config {
        &self.config
    }

    fn server(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    fn key_label(&self) -> String {
        match &self.tsig {
            Some(k) => format!("TSIG key {} ({})", k.display_name(), k.algorithm),
            None => "no TSIG key".into(),
        }
    }

    fn configured_zone(&self, zone: &Zone) -> Result<Name, ProviderError> {
        if !self.zones.iter().any(|z| z.name == zone.name) {
            return Err(ProviderError::ZoneNotFound(format!(
                "{} is not one of the zones configured for RFC2136 server {}",
                zone.name,
                self.server()
            )));
        }
        absolute_name(&zone.name).map_err(ProviderError::Config)
    }

    async fn resolve(&self) -> Result<SocketAddr, ExchangeError> {
        let host = self.config.host.trim().trim_start_matches('[').trim_end_matches(']');
        let mut addrs = tokio::time::timeout(self.config.timeout, tokio::net::lookup_host((host, self.config.port)))
            .await
            .map_err(|_| ExchangeError::Unreachable(format!("resolving {} timed out", self.config.host)))?
            .map_err(|e| ExchangeError::Unreachable(format!("resolving {} failed: {e}", self.config.host)))?;
        addrs.next().ok_or_else(|| ExchangeError::Unreachable(format!("{} resolves to no address", self.config.host)))
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Sends one request and returns its answer: signs it when `sign` and a key is configured,
    /// picks UDP or TCP, retries over TCP when the UDP answer is truncated, and checks the rcode
    /// and (for a success) the TSIG of the answer.
    async fn exchange(&self, mut request: Message, sign: bool, what: &str) -> Result<Message, ExchangeError> {
        let key = if sign { self.tsig.as_ref() } else { None };
        let request_mac = match key {
            Some(k) => Some(
                k.sign(&mut request, Self::now()).map_err(|e| ExchangeError::Unreachable(format!("{what}: {e}")))?,
            ),
            None => None,
        };
        let bytes = request
            .to_vec()
            .map_err(|e| ExchangeError::Unreachable(format!("{what}: encoding the request failed: {e}")))?;
        if bytes.len() > MAX_MESSAGE {
            return Err(ExchangeError::TooLarge(format!(
                "{what}: the request is {} bytes, over the DNS limit",
                bytes.len()
            )));
        }
        let id = request.metadata.id;
        let use_udp = self.config.transport == Transport::Udp && bytes.len() <= MAX_UDP_REQUEST;
        let mut raw = if use_udp {
            self.udp_exchange(&bytes, id, what).await?
        } else {
            self.tcp_exchange(&bytes, id, what).await?
        };
        let mut response = parse_response(&raw, id, what)?;
        if use_udp && response.metadata.truncation {
            raw = self.tcp_exchange(&bytes, id, what).await?;
            response = parse_response(&raw, id, what)?;
        }
        let verified = match (key, request_mac) {
            (Some(k), Some(mac)) => Some(ResponseVerifier::new(k, mac).verify(&raw, &response, Self::now())),
            _ => None,
        };
        // A REFUSED signed with our key comes from a server that accepted the key, so it refuses
        // the content (BIND's check-mx and check-integrity, an update-policy that does not cover
        // the name): bisection can pin that on single changes.
        if response.metadata.response_code == ResponseCode::Refused && matches!(verified, Some(Ok(()))) {
            return Err(ExchangeError::Rcode(
                ResponseCode::Refused,
                format!("{what}: server {} answered REFUSED to {}", self.server(), self.key_label()),
            ));
        }
        self.check_rcode(&response, what)?;
        if let Some(Err(e)) = verified {
            return Err(ExchangeError::Auth(format!("{what}: {e} (with {})", self.key_label())));
        }
        Ok(response)
    }

    /// Classifies a non-success answer. NOTAUTH and REFUSED mean the key (or its absence) is not
    /// accepted; a TSIG error says why.
    fn check_rcode(&self, response: &Message, what: &str) -> Result<(), ExchangeError> {
        let rc = response.metadata.response_code;
        let tsig_error = response.signature().and_then(|s| s.data.error);
        if let Some(err) = tsig_error {
            return Err(ExchangeError::Auth(format!(
                "{what}: server {} answered {} with TSIG error {} for {}",
                self.server(),
                rcode_name(rc),
                tsig_error_name(err),
                self.key_label()
            )));
        }
        match rc {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NotAuth | ResponseCode::Refused => Err(ExchangeError::Auth(format!(
                "{what}: server {} answered {} for {}",
                self.server(),
                rcode_name(rc),
                self.key_label()
            ))),
            other => Err(ExchangeError::Rcode(
                other,
                format!("{what}: server {} answered {}", self.server(), rcode_name(other)),
            )),
        }
    }

    async fn udp_exchange(&self, request: &[u8], id: u16, what: &str) -> Result<Vec<u8>, ExchangeError> {
        let addr = self.resolve().await?;
        let server = self.server();
        let attempt = async {
            let local: SocketAddr =
                if addr.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
            let socket = UdpSocket::bind(local).await?;
            // A connected socket only receives from the server and reports ICMP port-unreachable
            // as ECONNREFUSED, so a stopped server fails fast instead of timing out.
            socket.connect(addr).await?;
            socket.send(request).await?;
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                let n = socket.recv(&mut buf).await?;
                // Late answers to earlier requests on a reused port are not ours.
                if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    buf.truncate(n);
                    return Ok::<_, std::io::Error>(buf);
                }
            }
        };
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(e)) => Err(ExchangeError::Unreachable(format!("{what}: UDP exchange with {server} failed: {e}"))),
            Err(_) => Err(ExchangeError::Unreachable(format!(
                "{what}: no UDP answer from {server} within {:?}",
                self.config.timeout
            ))),
        }
    }

    async fn tcp_connect(&self, request: &[u8], what: &str) -> Result<TcpStream, ExchangeError> {
        let addr = self.resolve().await?;
        let server = self.server();
        let attempt = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut framed = Vec::with_capacity(request.len() + 2);
            framed.extend_from_slice(&(request.len() as u16).to_be_bytes());
            framed.extend_from_slice(request);
            stream.write_all(&framed).await?;
            Ok::<_, std::io::Error>(stream)
        };
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(ExchangeError::Unreachable(format!("{what}: TCP connection to {server} failed: {e}"))),
            Err(_) => Err(ExchangeError::Unreachable(format!(
                "{what}: TCP connection to {server} not established within {:?}",
                self.config.timeout
            ))),
        }
    }

    async fn tcp_read(&self, stream: &mut TcpStream, what: &str) -> Result<Vec<u8>, ExchangeError> {
        let attempt = async {
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(e)) => {
                Err(ExchangeError::Unreachable(format!("{what}: reading from {} over TCP failed: {e}", self.server())))
            }
            Err(_) => Err(ExchangeError::Unreachable(format!(
                "{what}: no TCP answer from {} within {:?}",
                self.server(),
                self.config.timeout
            ))),
        }
    }

    async fn tcp_exchange(&self, request: &[u8], id: u16, what: &str) -> Result<Vec<u8>, ExchangeError> {
        let mut stream = self.tcp_connect(request, what).await?;
        loop {
            let raw = self.tcp_read(&mut stream, what).await?;
            if raw.len() >= 2 && u16::from_be_bytes([raw[0], raw[1]]) == id {
                return Ok(raw);
            }
        }
    }

    /// Checks that the server is authoritative for `zone`.
    async fn check_zone(&self, zone: &Zone) -> Result<(), ProviderError> {
        let origin = self.configured_zone(zone)?;
        let mut query = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        query.add_query(Query::query(origin.clone(), WireType::SOA));
        let what = format!("SOA query for zone {}", zone.name);
        let missing = |why: String| {
            ProviderError::ZoneNotFound(format!("{} on RFC2136 server {}: {why}", zone.name, self.server()))
        };
        match self.exchange(query, false, &what).await {
            Ok(resp) => {
                let has_soa = resp.answers.iter().any(|r| r.record_type() == WireType::SOA && r.name == origin);
                if !has_soa {
                    return Err(missing("the server returned no SOA for it (not a zone apex there)".into()));
                }
                if !resp.metadata.authoritative {
                    return Err(missing("the server is not authoritative for it".into()));
                }
                Ok(())
            }
            Err(ExchangeError::Unreachable(m)) => Err(ProviderError::Unreachable(m)),
            Err(ExchangeError::Auth(m)) | Err(ExchangeError::Rcode(_, m)) => Err(missing(m)),
            Err(ExchangeError::TooLarge(m)) => Err(ProviderError::Config(m)),
        }
    }

    /// Reads the whole zone by AXFR over TCP; every message is verified when a key is set.
    async fn transfer(&self, zone: &Zone) -> Result<Vec<Record>, ProviderError> {
        let origin = self.configured_zone(zone)?;
        let what = format!("AXFR of zone {}", zone.name);
        let mut request = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        request.add_query(Query::query(origin, WireType::AXFR));
        let id = request.metadata.id;
        let request_mac = match &self.tsig {
            Some(k) => {
                Some(k.sign(&mut request, Self::now()).map_err(|e| ProviderError::Config(format!("{what}: {e}")))?)
            }
            None => None,
        };
        let mut verifier = match (&self.tsig, request_mac) {
            (Some(k), Some(mac)) => Some(ResponseVerifier::new(k, mac)),
            _ => None,
        };
        let bytes =
            request.to_vec().map_err(|e| ProviderError::Config(format!("{what}: encoding the request failed: {e}")))?;
        let to_provider_error = |e: ExchangeError| match e {
            ExchangeError::Unreachable(m) => ProviderError::Unreachable(m),
            ExchangeError::Auth(m) => ProviderError::AuthFailed(m),
            ExchangeError::Rcode(ResponseCode::NXDomain | ResponseCode::NotZone, m) => ProviderError::ZoneNotFound(m),
            // SERVFAIL and the like: the zone is not loaded or the server is in trouble. Retrying
            // later is the only thing extdns can do about it.
            ExchangeError::Rcode(_, m) => ProviderError::Unreachable(m),
            ExchangeError::TooLarge(m) => ProviderError::Config(m),
        };
        let mut stream = self.tcp_connect(&bytes, &what).await.map_err(to_provider_error)?;
        let mut records = Vec::new();
        let mut soa_seen = 0usize;
        let mut messages = 0usize;
        while soa_seen < 2 {
            let raw = self.tcp_read(&mut stream, &what).await.map_err(to_provider_error)?;
            let Ok(msg) = parse_response(&raw, id, &what) else {
                // Not ours or not parseable: neither can be part of this transfer.
                return Err(ProviderError::Unreachable(format!(
                    "{what}: server {} sent a message that is not an answer to the transfer",
                    self.server()
                )));
            };
            self.check_rcode(&msg, &what).map_err(to_provider_error)?;
            if let Some(v) = verifier.as_mut() {
                v.verify(&raw, &msg, Self::now())
                    .map_err(|e| ProviderError::AuthFailed(format!("{what}: {e} (with {})", self.key_label())))?;
            }
            if messages == 0 && msg.answers.first().map(|r| r.record_type()) != Some(WireType::SOA) {
                return Err(ProviderError::Unreachable(format!(
                    "{what}: the transfer from {} does not start with the SOA",
                    self.server()
                )));
            }
            if messages > 0 && msg.answers.is_empty() {
                return Err(ProviderError::Unreachable(format!(
                    "{what}: {} sent an empty message before the closing SOA",
                    self.server()
                )));
            }
            messages += 1;
            for r in msg.answers {
                if r.record_type() == WireType::SOA {
                    soa_seen += 1;
                }
                records.push(r);
            }
        }
        if let Some(v) = &verifier {
            v.finish().map_err(|e| ProviderError::AuthFailed(format!("{what}: {e} (with {})", self.key_label())))?;
        }
        tracing::debug!(zone = %zone.name, server = %self.server(), messages, records = records.len(), "zone transferred");
        Ok(records)
    }

    /// Sends one UPDATE holding `batch`; on an rcode refusal, bisects to find the refused
    /// change(s). Fills `results`; returns an error that must end the whole apply (auth, transport).
    async fn apply_batch(
        &self,
        origin: &Name,
        zone: &Zone,
        batch: &[PreparedChange],
        results: &mut [Option<ChangeResult>],
    ) -> Result<(), ProviderError> {
        // Iterative bisection keeps the order of changes (a later change may depend on an
        // earlier one of the same batch having been applied).
        let mut pending: Vec<&[PreparedChange]> = vec![batch];
        while let Some(part) = pending.pop() {
            let Some(first) = part.first() else { continue };
            let what = if part.len() == 1 {
                format!("{} in zone {}", first.describe, zone.name)
            } else {
                format!("UPDATE of {} changes in zone {}", part.len(), zone.name)
            };
            let message = update_message(origin, part);
            let outcome = match message.to_vec() {
                // The TSIG record adds at most ~350 bytes (255-byte key name, 64-byte MAC).
                Ok(b) if b.len() + TSIG_RECORD_MAX > MAX_MESSAGE => {
                    Err(ExchangeError::TooLarge(format!("{what}: too large for one DNS message ({} bytes)", b.len())))
                }
                _ => match extdns_core::provider::write_allowed(&what) {
                    Ok(()) => self.exchange(message, true, &what).await.map(|_| ()),
                    Err(e) => return Err(e),
                },
            };
            match outcome {
                Ok(()) => {
                    for c in part {
                        results[c.index] = Some(Ok(Applied::Live));
                    }
                }
                Err(ExchangeError::Rcode(_, _) | ExchangeError::TooLarge(_)) if part.len() > 1 => {
                    tracing::debug!(zone = %zone.name, changes = part.len(), "UPDATE refused, bisecting: {outcome:?}");
                    let (head, tail) = part.split_at(part.len() / 2);
                    pending.push(tail);
                    pending.push(head);
                }
                Err(ExchangeError::Rcode(rc, msg)) => {
                    results[first.index] = Some(Err(ProviderError::Rejected(format!("{msg}: {}", rcode_hint(rc)))));
                }
                Err(ExchangeError::TooLarge(msg)) => {
                    results[first.index] = Some(Err(ProviderError::Rejected(msg)));
                }
                Err(ExchangeError::Auth(msg)) => return Err(ProviderError::AuthFailed(msg)),
                Err(ExchangeError::Unreachable(msg)) => return Err(ProviderError::Unreachable(msg)),
            }
        }
        Ok(())
    }
}

fn parse_response(raw: &[u8], id: u16, what: &str) -> Result<Message, ExchangeError> {
    let msg =
        Message::from_vec(raw).map_err(|e| ExchangeError::Unreachable(format!("{what}: malformed answer: {e}")))?;
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return Err(ExchangeError::Unreachable(format!("{what}: the answer does not match the request")));
    }
    Ok(msg)
}

#[async_trait]
impl Provider for Rfc2136Provider {
    /// The configured zones, each checked with an SOA query: a zone the server is not
    /// authoritative for fails the call with `ZoneNotFound` naming it.
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let checks = futures::future::join_all(self.zones.iter().map(|z| self.check_zone(z))).await;
        let mut missing = Vec::new();
        for r in checks {
            match r {
                Ok(()) => {}
                Err(ProviderError::ZoneNotFound(m)) => missing.push(m),
                Err(e) => return Err(e),
            }
        }
        if !missing.is_empty() {
            return Err(ProviderError::ZoneNotFound(missing.join("; ")));
        }
        Ok(self.zones.clone())
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        match self.transfer(zone).await {
            Ok(records) => Ok(records_to_endpoints(zone, &records)),
            // Servers refuse transfers of zones they do not serve with the same NOTAUTH or
            // REFUSED as transfers they do not allow; the SOA tells the two apart.
            Err(ProviderError::AuthFailed(m)) => match self.check_zone(zone).await {
                Err(missing @ ProviderError::ZoneNotFound(_)) => Err(missing),
                _ => Err(ProviderError::AuthFailed(m)),
            },
            Err(e) => Err(e),
        }
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let origin = match self.configured_zone(zone) {
            Ok(o) => o,
            Err(e) => return changes.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut prepared = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            match prepare_change(i, zone, c, |e| self.ttl_of(e)) {
                Ok(p) => prepared.push(p),
                Err(msg) => results[i] = Some(Err(ProviderError::Rejected(msg))),
            }
        }
        let batches = into_batches(prepared, self.config.batch_size);
        let mut abort: Option<ProviderError> = None;
        for batch in &batches {
            if let Some(err) = &abort {
                for c in batch {
                    results[c.index] = Some(Err(held_back(err)));
                }
                continue;
            }
            if let Err(e) = self.apply_batch(&origin, zone, batch, &mut results).await {
                tracing::warn!(zone = %zone.name, server = %self.server(), error = %e, "RFC2136 update failed; not sending the remaining changes");
                for c in batch {
                    if results[c.index].is_none() {
                        results[c.index] = Some(Err(e.clone()));
                    }
                }
                abort = Some(e);
            }
        }
        crate::failure::collect_results(results)
    }

    fn check(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        self.check_change(zone, change)
    }
}

impl Rfc2136Provider {
    /// As [`Provider::check`]: what `apply` would refuse before sending.
    fn check_change(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        prepare_change(0, zone, change, |e| self.ttl_of(e)).map(|_| ()).map_err(ProviderError::Rejected)
    }

    fn ttl_of(&self, e: &Endpoint) -> u32 {
        let ttl = e.ttl.unwrap_or(self.config.default_ttl);
        ttl.max(self.config.min_ttl.unwrap_or(0))
    }
}

/// The error of a change that was not sent because an earlier message failed for a reason that
/// holds for every message (credentials, reachability): same kind, so it is retried alike.
fn held_back(cause: &ProviderError) -> ProviderError {
    let wrap = |m: &str| format!("not sent after an earlier UPDATE failed: {m}");
    match cause {
        ProviderError::Unreachable(m) => ProviderError::Unreachable(wrap(m)),
        ProviderError::AuthFailed(m) => ProviderError::AuthFailed(wrap(m)),
        ProviderError::Throttled(m) => ProviderError::Throttled(wrap(m)),
        ProviderError::Rejected(m) => ProviderError::Rejected(wrap(m)),
        ProviderError::ZoneNotFound(m) => ProviderError::ZoneNotFound(wrap(m)),
        ProviderError::Config(m) => ProviderError::Config(wrap(m)),
    }
}

/// Cuts prepared changes into messages of at most `size` changes, never putting two
/// conflicting changes into one message.
fn into_batches(prepared: Vec<PreparedChange>, size: usize) -> Vec<Vec<PreparedChange>> {
    let mut batches: Vec<Vec<PreparedChange>> = Vec::new();
    let mut current: Vec<PreparedChange> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for p in prepared {
        // A cheap name check first; the exact conflict test only runs when a name repeats.
        let repeats = p.touches.iter().any(|(n, _)| names.contains(n));
        let conflict = repeats && current.iter().any(|c| c.conflicts_with(&p));
        if current.len() >= size.max(1) || conflict {
            batches.push(std::mem::take(&mut current));
            names.clear();
        }
        names.extend(p.touches.iter().map(|(n, _)| n.clone()));
        current.push(p);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn update_message(origin: &Name, batch: &[PreparedChange]) -> Message {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Update);
    let mut zone = Query::query(origin.clone(), WireType::SOA);
    zone.set_query_class(DNSClass::IN);
    msg.add_zone(zone);
    for c in batch {
        for p in &c.prerequisites {
            msg.add_pre_requisite(p.clone());
        }
        for u in &c.updates {
            msg.add_update(u.clone());
        }
    }
    msg
}

/// Translates one change into prerequisites and updates (RFC 2136 §2.4, §2.5).
fn prepare_change(
    index: usize,
    zone: &Zone,
    change: &Change,
    ttl_of: impl Fn(&Endpoint) -> u32,
) -> Result<PreparedChange, String> {
    let describe = match change {
        Change::Create(e) | Change::Delete(e) => {
            format!("{} {} {}", change.verb(), normalize_name(&e.dns_name), e.record_type)
        }
        Change::Update { old, new } => {
            let (o, n) = (normalize_name(&old.dns_name), normalize_name(&new.dns_name));
            if o == n && old.record_type == new.record_type {
                format!("update {o} {}", old.record_type)
            } else {
                format!("update {o} {} to {n} {}", old.record_type, new.record_type)
            }
        }
    };
    let fail = |why: String| format!("{describe}: {why}");
    let mut prerequisites = Vec::new();
    let mut updates = Vec::new();
    let mut touches = Vec::new();
    match change {
        Change::Create(e) => {
            let (name, rdatas) = rrset_of(zone, e).map_err(fail)?;
            if rdatas.is_empty() {
                return Err(fail("the record has no targets".into()));
            }
            prerequisites.extend(absent_prerequisites(&name, e.record_type));
            let ttl = ttl_of(e);
            updates.extend(rdatas.into_iter().map(|d| Record::from_rdata(name.clone(), ttl, d)));
            touches.push((lower(&name), e.record_type));
        }
        Change::Update { old, new } => {
            let (old_name, old_rdatas) = rrset_of(zone, old).map_err(fail)?;
            let (new_name, new_rdatas) = rrset_of(zone, new).map_err(fail)?;
            if new_rdatas.is_empty() {
                return Err(fail("the new record has no targets".into()));
            }
            prerequisites.extend(exact_rrset_prerequisites(&old_name, old.record_type, old_rdatas));
            let same_rrset = old_name == new_name && old.record_type == new.record_type;
            if !same_rrset {
                prerequisites.extend(absent_prerequisites(&new_name, new.record_type));
            }
            updates.push(delete_rrset(&old_name, old.record_type));
            let ttl = ttl_of(new);
            updates.extend(new_rdatas.into_iter().map(|d| Record::from_rdata(new_name.clone(), ttl, d)));
            touches.push((lower(&old_name), old.record_type));
            if !same_rrset {
                touches.push((lower(&new_name), new.record_type));
            }
        }
        Change::Delete(e) => {
            let (name, rdatas) = rrset_of(zone, e).map_err(fail)?;
            if rdatas.is_empty() {
                // Deleting "whatever is there" could remove records someone else wrote.
                return Err(fail("the record has no targets, so there is nothing to delete".into()));
            }
            prerequisites.extend(exact_rrset_prerequisites(&name, e.record_type, rdatas.clone()));
            for d in rdatas {
                let mut r = Record::from_rdata(name.clone(), 0, d);
                r.dns_class = DNSClass::NONE;
                updates.push(r);
            }
            touches.push((lower(&name), e.record_type));
        }
    }
    Ok(PreparedChange { index, describe, prerequisites, updates, touches })
}

fn lower(name: &Name) -> String {
    super::wire_name::to_text(name)
}

/// "RRset does not exist" for the type, and for CNAME "name is not in use"; for any other type
/// also "no CNAME at the name" (RFC 2136 §2.4.3, §2.4.5).
fn absent_prerequisites(name: &Name, rt: RecordType) -> Vec<Record> {
    let nx = |t: WireType| {
        let mut r = Record::update0(name.clone(), 0, t);
        r.dns_class = DNSClass::NONE;
        r
    };
    if rt == RecordType::CNAME {
        vec![nx(WireType::ANY)]
    } else {
        vec![nx(super::wire_type(rt)), nx(WireType::CNAME)]
    }
}

/// "RRset exists (value dependent)", RFC 2136 §2.4.2: the RRset holds exactly these values.
fn exact_rrset_prerequisites(name: &Name, rt: RecordType, rdatas: Vec<RData>) -> Vec<Record> {
    if rdatas.is_empty() {
        // Without values only existence can be required.
        let mut r = Record::update0(name.clone(), 0, super::wire_type(rt));
        r.dns_class = DNSClass::ANY;
        return vec![r];
    }
    rdatas.into_iter().map(|d| Record::from_rdata(name.clone(), 0, d)).collect()
}

fn delete_rrset(name: &Name, rt: RecordType) -> Record {
    let mut r = Record::update0(name.clone(), 0, super::wire_type(rt));
    r.dns_class = DNSClass::ANY;
    r
}

/// The owner name and record data of an endpoint, checked against the zone.
fn rrset_of(zone: &Zone, e: &Endpoint) -> Result<(Name, Vec<RData>), String> {
    if !e.set_identifier.is_empty() {
        return Err(format!(
            "setIdentifier {:?} is not supported: a DNS server holds one RRset per name and type",
            e.set_identifier
        ));
    }
    let normalized = normalize_name(&e.dns_name);
    if !zone.contains(&normalized) {
        return Err(format!("{normalized} is not in zone {}", zone.name));
    }
    // The name keeps the case it was given: DNS compares names case-insensitively, and servers
    // store the first spelling they see.
    let name = absolute_name(&e.dns_name)?;
    let mut rdatas = Vec::with_capacity(e.targets.len());
    let mut seen = HashSet::new();
    for t in &e.targets {
        let d = target_to_rdata(e.record_type, t)?;
        if seen.insert(d.clone()) {
            rdatas.push(d);
        }
    }
    Ok((name, rdatas))
}

fn absolute_name(s: &str) -> Result<Name, String> {
    super::wire_name::to_wire(s)
}

fn model_type(t: WireType) -> Option<RecordType> {
    Some(match t {
        WireType::A => RecordType::A,
        WireType::AAAA => RecordType::AAAA,
        WireType::CNAME => RecordType::CNAME,
        WireType::TXT => RecordType::TXT,
        WireType::SRV => RecordType::SRV,
        WireType::MX => RecordType::MX,
        WireType::NS => RecordType::NS,
        WireType::PTR => RecordType::PTR,
        WireType::CAA => RecordType::CAA,
        _ => return None,
    })
}

fn parse_u16(field: &str, s: &str, target: &str) -> Result<u16, String> {
    s.parse().map_err(|_| format!("{field} {s:?} in target {target:?} is not a number from 0 to 65535"))
}

/// Target string in the endpoint format to record data.
fn target_to_rdata(rt: RecordType, target: &str) -> Result<RData, String> {
    let t = target.trim();
    Ok(match rt {
        RecordType::A => RData::A(A(t.parse().map_err(|_| format!("{t:?} is not an IPv4 address"))?)),
        RecordType::AAAA => RData::AAAA(AAAA(t.parse().map_err(|_| format!("{t:?} is not an IPv6 address"))?)),
        RecordType::CNAME => RData::CNAME(rdata::CNAME(absolute_name(t)?)),
        RecordType::NS => RData::NS(rdata::NS(absolute_name(t)?)),
        RecordType::PTR => RData::PTR(rdata::PTR(absolute_name(t)?)),
        RecordType::MX => match t.split_whitespace().collect::<Vec<_>>().as_slice() {
            [pref, host] => RData::MX(MX::new(parse_u16("preference", pref, t)?, absolute_name(host)?)),
            _ => return Err(format!("{t:?} is not an MX target \"<preference> <host>\"")),
        },
        RecordType::SRV => match t.split_whitespace().collect::<Vec<_>>().as_slice() {
            [prio, weight, port, host] => RData::SRV(SRV::new(
                parse_u16("priority", prio, t)?,
                parse_u16("weight", weight, t)?,
                parse_u16("port", port, t)?,
                absolute_name(host)?,
            )),
            _ => return Err(format!("{t:?} is not an SRV target \"<priority> <weight> <port> <host>\"")),
        },
        // Not trimmed: leading and trailing spaces are part of a TXT value.
        RecordType::TXT => RData::TXT(TXT::from_bytes(txt_character_strings(target))),
        RecordType::CAA => {
            let mut parts = t.splitn(3, ' ');
            let (Some(flags), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("{t:?} is not a CAA target \"<flags> <tag> <value>\""));
            };
            let flags: u8 =
                flags.parse().map_err(|_| format!("CAA flags {flags:?} in {t:?} are not a number from 0 to 255"))?;
            if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("CAA tag {tag:?} in {t:?} must be 1 to 15 letters or digits"));
            }
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            let mut caa = CAA::new_issue(false, None, Vec::new());
            caa.issuer_critical = flags & 0b1000_0000 != 0;
            caa.reserved_flags = flags & 0b0111_1111;
            caa.tag = tag.to_string();
            caa.value = value.as_bytes().to_vec();
            RData::CAA(caa)
        }
    })
}

/// Splits a TXT value into character-strings of at most 255 bytes; an empty value is one empty
/// string, since a TXT record needs at least one.
fn txt_character_strings(value: &str) -> Vec<&[u8]> {
    if value.is_empty() {
        return vec![&b""[..]];
    }
    value.as_bytes().chunks(MAX_CHARACTER_STRING).collect()
}

fn render_name(n: &Name) -> String {
    if n.is_root() {
        return ".".into();
    }
    super::wire_name::to_text(n)
}

/// Record data to the endpoint's target format; `None` for types extdns does not manage.
fn rdata_to_target(d: &RData) -> Option<String> {
    Some(match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => render_name(&n.0),
        RData::NS(n) => render_name(&n.0),
        RData::PTR(n) => render_name(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, render_name(&mx.exchange)),
        RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, render_name(&s.target)),
        // external-dns joins the character-strings of one TXT record into one value.
        RData::TXT(txt) => {
            String::from_utf8_lossy(&txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect::<Vec<u8>>())
                .into_owned()
        }
        RData::CAA(caa) => format!("{} {} \"{}\"", caa.flags(), caa.tag, String::from_utf8_lossy(&caa.value)),
        _ => return None,
    })
}

/// Groups transferred records into endpoints: one per name and type, TTL the lowest in the
/// RRset, SOA and apex NS left out (see the module docs).
fn records_to_endpoints(zone: &Zone, records: &[Record]) -> Vec<Endpoint> {
    let mut sets: BTreeMap<(String, RecordType), (Vec<String>, u32)> = BTreeMap::new();
    for r in records {
        let Some(rt) = model_type(r.record_type()) else {
            continue;
        };
        let name = render_name(&r.name);
        if !zone.contains(&name) || (rt == RecordType::NS && name == zone.name) {
            continue;
        }
        let Some(target) = rdata_to_target(&r.data) else {
            continue;
        };
        let entry = sets.entry((name, rt)).or_insert_with(|| (Vec::new(), r.ttl));
        entry.0.push(target);
        entry.1 = entry.1.min(r.ttl);
    }
    sets.into_iter().map(|((name, rt), (targets, ttl))| Endpoint::new(name, rt, targets).with_ttl(ttl)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlg;
    use hickory_proto::rr::TSigResponseContext;
    use hickory_proto::rr::TSigner;

    const SECRET: &str = "e2a7m/0u+lZirz9VYyx2fdOgOLl0EY5tB4dHTDFRiLk=";

    fn zone() -> Zone {
        Zone::named("example.test")
    }

    fn origin() -> Name {
        absolute_name("example.test").unwrap()
    }

    fn key(alg: TsigAlgorithm) -> TsigKey {
        TsigKey::from_config(&TsigConfig { key_name: "externaldns-key".into(), algorithm: alg, secret: SECRET.into() })
            .unwrap()
    }

    fn roundtrip(rt: RecordType, target: &str) -> String {
        let d = target_to_rdata(rt, target).unwrap();
        let rec = Record::from_rdata(absolute_name("x.example.test").unwrap(), 60, d);
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        msg.add_answer(rec);
        let parsed = Message::from_vec(&msg.to_vec().unwrap()).unwrap();
        rdata_to_target(&parsed.answers[0].data).unwrap()
    }

    #[test]
    fn targets_survive_the_wire() {
        assert_eq!(roundtrip(RecordType::A, "192.0.2.1"), "192.0.2.1");
        assert_eq!(roundtrip(RecordType::AAAA, "2001:db8::1"), "2001:db8::1");
        assert_eq!(roundtrip(RecordType::CNAME, "Target.Example.test"), "target.example.test");
        assert_eq!(roundtrip(RecordType::MX, "10 mail.example.test"), "10 mail.example.test");
        assert_eq!(roundtrip(RecordType::SRV, "0 5 5060 sip.example.test"), "0 5 5060 sip.example.test");
        assert_eq!(roundtrip(RecordType::CAA, "0 issue \"letsencrypt.org\""), "0 issue \"letsencrypt.org\"");
        assert_eq!(roundtrip(RecordType::CAA, "128 issue letsencrypt.org"), "128 issue \"letsencrypt.org\"");
        assert_eq!(roundtrip(RecordType::TXT, "with spaces, and \"quotes\""), "with spaces, and \"quotes\"");
        assert_eq!(roundtrip(RecordType::TXT, ""), "");
    }

    #[test]
    fn long_txt_is_split_into_character_strings_and_joined_back() {
        let long = "x".repeat(600);
        let RData::TXT(txt) = target_to_rdata(RecordType::TXT, &long).unwrap() else { panic!("not TXT") };
        assert_eq!(txt.txt_data.iter().map(|s| s.len()).collect::<Vec<_>>(), vec![255, 255, 90]);
        assert_eq!(roundtrip(RecordType::TXT, &long), long);
    }

    #[test]
    fn bad_targets_are_rejected_with_the_reason() {
        assert!(target_to_rdata(RecordType::A, "300.0.0.1").unwrap_err().contains("not an IPv4 address"));
        assert!(target_to_rdata(RecordType::MX, "mail.example.test").unwrap_err().contains("MX target"));
        assert!(target_to_rdata(RecordType::SRV, "1 2 99999 x").unwrap_err().contains("port"));
        assert!(target_to_rdata(RecordType::CAA, "0 is-sue x").unwrap_err().contains("CAA tag"));
    }

    #[test]
    fn listing_groups_rrsets_and_leaves_out_soa_and_apex_ns() {
        let name = |s: &str| absolute_name(s).unwrap();
        let soa = rdata::SOA::new(name("ns1.example.test"), name("hostmaster.example.test"), 1, 3600, 600, 86400, 300);
        let records = vec![
            Record::from_rdata(name("example.test"), 300, RData::SOA(soa)),
            Record::from_rdata(name("example.test"), 300, RData::NS(rdata::NS(name("ns1.example.test")))),
            Record::from_rdata(name("example.test"), 60, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(name("Sub.Example.test"), 300, RData::NS(rdata::NS(name("ns.other.test")))),
            Record::from_rdata(name("App.example.test"), 120, RData::A(A::new(192, 0, 2, 2))),
            Record::from_rdata(name("app.example.test"), 60, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(name("*.wild.example.test"), 60, RData::TXT(TXT::new(vec!["a".into(), "b c".into()]))),
        ];
        let eps = records_to_endpoints(&zone(), &records);
        let got: Vec<(String, RecordType, Vec<String>, Option<u32>)> =
            eps.into_iter().map(|e| (e.dns_name, e.record_type, e.targets, e.ttl)).collect();
        assert_eq!(
            got,
            vec![
                ("*.wild.example.test".into(), RecordType::TXT, vec!["ab c".into()], Some(60)),
                ("app.example.test".into(), RecordType::A, vec!["192.0.2.1".into(), "192.0.2.2".into()], Some(60)),
                ("example.test".into(), RecordType::A, vec!["192.0.2.1".into()], Some(60)),
                ("sub.example.test".into(), RecordType::NS, vec!["ns.other.test".into()], Some(300)),
            ]
        );
    }

    #[test]
    fn wildcard_ownership_txt_names_of_external_dns_are_written_and_listed_as_such() {
        // external-dns (no wildcard replacement) owns *.w.example.test through a-*.w.example.test.
        let txt = Change::Create(
            Endpoint::new("a-*.w.example.test", RecordType::TXT, vec!["heritage=external-dns".into()]).with_ttl(60),
        );
        let p = prepare(0, &txt);
        assert_eq!(p.updates[0].name.iter().next(), Some(&b"a-*"[..]));
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        msg.add_answers(p.updates.clone());
        let parsed = Message::from_vec(&msg.to_vec().unwrap()).unwrap();
        let eps = records_to_endpoints(&zone(), &parsed.answers);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].dns_name, "a-*.w.example.test");
    }

    fn create(name: &str, rt: RecordType, targets: &[&str]) -> Change {
        Change::Create(Endpoint::new(name, rt, targets.iter().map(|s| s.to_string()).collect()).with_ttl(60))
    }

    fn prepare(i: usize, c: &Change) -> PreparedChange {
        prepare_change(i, &zone(), c, |e| e.ttl.unwrap_or(300)).unwrap()
    }

    #[test]
    fn create_requires_absence_and_cname_requires_an_unused_name() {
        let a = prepare(0, &create("a.example.test", RecordType::A, &["192.0.2.1"]));
        let pre: Vec<(WireType, DNSClass)> = a.prerequisites.iter().map(|r| (r.record_type(), r.dns_class)).collect();
        assert_eq!(pre, vec![(WireType::A, DNSClass::NONE), (WireType::CNAME, DNSClass::NONE)]);
        let c = prepare(0, &create("c.example.test", RecordType::CNAME, &["a.example.test"]));
        let pre: Vec<(WireType, DNSClass)> = c.prerequisites.iter().map(|r| (r.record_type(), r.dns_class)).collect();
        assert_eq!(pre, vec![(WireType::ANY, DNSClass::NONE)]);
        assert_eq!(c.updates.len(), 1);
        assert_eq!(c.updates[0].ttl, 60);
    }

    #[test]
    fn update_and_delete_require_the_exact_old_values() {
        let old = Endpoint::new("a.example.test", RecordType::A, vec!["192.0.2.1".into(), "192.0.2.2".into()]);
        let new = Endpoint::new("a.example.test", RecordType::A, vec!["192.0.2.3".into()]).with_ttl(30);
        let u = prepare(0, &Change::Update { old: old.clone(), new });
        assert_eq!(u.prerequisites.len(), 2);
        assert!(u.prerequisites.iter().all(|r| r.dns_class == DNSClass::IN && r.ttl == 0));
        assert_eq!(u.updates[0].dns_class, DNSClass::ANY);
        assert_eq!((u.updates[1].ttl, u.updates.len()), (30, 2));
        let d = prepare(0, &Change::Delete(old));
        assert_eq!(d.prerequisites.len(), 2);
        assert!(d.updates.iter().all(|r| r.dns_class == DNSClass::NONE && r.ttl == 0));
    }

    #[test]
    fn changes_outside_the_zone_or_with_set_identifier_are_rejected() {
        let err =
            prepare_change(0, &zone(), &create("a.other.test", RecordType::A, &["192.0.2.1"]), |_| 60).unwrap_err();
        assert_eq!(err, "create a.other.test A: a.other.test is not in zone example.test");
        let mut e = Endpoint::new("a.example.test", RecordType::A, vec!["192.0.2.1".into()]);
        e.set_identifier = "eu".into();
        let err = prepare_change(0, &zone(), &Change::Create(e), |_| 60).unwrap_err();
        assert!(err.contains("setIdentifier \"eu\" is not supported"), "{err}");
    }

    #[test]
    fn batches_respect_size_and_never_mix_conflicting_changes() {
        let changes = [
            create("a.example.test", RecordType::A, &["192.0.2.1"]),
            create("a.example.test", RecordType::TXT, &["t"]),
            create("b.example.test", RecordType::A, &["192.0.2.1"]),
            Change::Delete(Endpoint::new("a.example.test", RecordType::A, vec!["192.0.2.1".into()])),
            create("A.example.test", RecordType::CNAME, &["b.example.test"]),
            create("c.example.test", RecordType::A, &["192.0.2.1"]),
            create("d.example.test", RecordType::A, &["192.0.2.1"]),
        ];
        let prepared: Vec<_> = changes.iter().enumerate().map(|(i, c)| prepare(i, c)).collect();
        let batches = into_batches(prepared, 3);
        let indices: Vec<Vec<usize>> = batches.iter().map(|b| b.iter().map(|c| c.index).collect()).collect();
        assert_eq!(indices, vec![vec![0, 1, 2], vec![3], vec![4, 5, 6]]);
    }

    #[test]
    fn tsig_algorithms_parse_in_any_case() {
        assert_eq!("HMAC-SHA512.".parse::<TsigAlgorithm>(), Ok(TsigAlgorithm::HmacSha512));
        assert_eq!("hmac-sha1".parse::<TsigAlgorithm>(), Ok(TsigAlgorithm::HmacSha1));
        assert!("hmac-md5".parse::<TsigAlgorithm>().unwrap_err().contains("unsupported TSIG algorithm"));
        assert_eq!(TsigAlgorithm::default(), TsigAlgorithm::HmacSha256);
    }

    #[test]
    fn config_errors_name_what_is_wrong() {
        let mut c = Rfc2136Config::new("127.0.0.1", 53, vec!["example.test".into()]);
        c.tsig = Some(TsigConfig {
            key_name: "k".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: "not base64!".into(),
        });
        let err = Rfc2136Provider::new(c.clone()).unwrap_err();
        assert!(matches!(&err, ProviderError::Config(m) if m.contains("not valid base64")), "{err}");
        assert!(!format!("{c:?}").contains("not base64!"), "secret leaked into Debug");
        c.tsig = None;
        c.zones = vec!["bad zone".into()];
        assert!(matches!(Rfc2136Provider::new(c).unwrap_err(), ProviderError::Config(m) if m.contains("bad zone")));
    }

    /// Our signature must be what hickory's own TSIG verifier accepts, and we must accept
    /// responses hickory's server-side signer produces, chained over several messages.
    #[test]
    fn tsig_interoperates_with_hickory_signer() {
        let k = key(TsigAlgorithm::HmacSha256);
        let hickory = TSigner::new(k.secret.clone(), HickoryAlg::HmacSha256, k.name.clone(), TSIG_FUDGE).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut request = Message::new(4242, MessageType::Query, OpCode::Update);
        request.add_zone(Query::query(origin(), WireType::SOA));
        let request_mac = k.sign(&mut request, now).unwrap();
        hickory.verify_message_byte(&request.to_vec().unwrap(), None, true).expect("hickory rejects our request MAC");

        // First response signed over the request MAC, second chained on the first.
        let mut first = Message::new(4242, MessageType::Response, OpCode::Update);
        first.add_answer(Record::from_rdata(
            absolute_name("a.example.test").unwrap(),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let unsigned = first.to_vec().unwrap();
        let sig =
            TSigResponseContext::new(4242, now, hickory.clone(), request_mac.clone(), None).sign(&unsigned).unwrap();
        let first_mac = sig.data.mac.clone();
        first.set_signature(sig);
        let first_raw = first.to_vec().unwrap();

        let mut verifier = ResponseVerifier::new(&k, request_mac);
        verifier.verify(&first_raw, &Message::from_vec(&first_raw).unwrap(), now).unwrap();

        let mut second = Message::new(4242, MessageType::Response, OpCode::Update);
        second.add_answer(Record::from_rdata(
            absolute_name("b.example.test").unwrap(),
            60,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        let second_unsigned = second.to_vec().unwrap();
        // Subsequent messages cover the previous MAC, the message and only the TSIG timers.
        let mut tbs = (first_mac.len() as u16).to_be_bytes().to_vec();
        tbs.extend_from_slice(&first_mac);
        tbs.extend_from_slice(&second_unsigned);
        tbs.extend_from_slice(&[0, 0]);
        tbs.extend_from_slice(&(now as u32).to_be_bytes());
        tbs.extend_from_slice(&TSIG_FUDGE.to_be_bytes());
        let mac = hickory.sign(&tbs).unwrap();
        let tsig = TSIG::new(HickoryAlg::HmacSha256, now, TSIG_FUDGE, mac, 4242, None, Vec::new());
        second.set_signature(Box::new(make_tsig_record(k.name.clone(), tsig)));
        let second_raw = second.to_vec().unwrap();
        verifier.verify(&second_raw, &Message::from_vec(&second_raw).unwrap(), now).unwrap();
        verifier.finish().unwrap();

        // A replay of the first message no longer verifies: the chain moved on.
        assert!(verifier.verify(&first_raw, &Message::from_vec(&first_raw).unwrap(), now).is_err());
    }

    #[test]
    fn tsig_rejects_wrong_secret_stale_time_and_unsigned_answers() {
        let k = key(TsigAlgorithm::HmacSha1);
        let other = TsigKey { secret: b"another secret".to_vec(), ..k.clone() };
        let now = 1_800_000_000;
        let mut request = Message::new(7, MessageType::Query, OpCode::Update);
        let request_mac = k.sign(&mut request, now).unwrap();
        assert_eq!(request_mac.len(), 20, "hmac-sha1 MACs are 20 bytes");

        // A "response" signed by the other key: sign a copy as if it were the first answer.
        let response = Message::new(7, MessageType::Response, OpCode::Update);
        let stub = TSIG::new(WireTsigAlgorithm::HmacSha1, now, TSIG_FUDGE, Vec::new(), 7, None, Vec::new());
        let unsigned = response.to_vec().unwrap();
        let mut tbs = (request_mac.len() as u16).to_be_bytes().to_vec();
        tbs.extend_from_slice(&request_mac);
        tbs.extend_from_slice(&unsigned);
        let mut enc = Vec::new();
        {
            let mut e = hickory_proto::serialize::binary::BinEncoder::new(&mut enc);
            stub.emit_tsig_for_mac(&mut e, &k.name).unwrap();
        }
        tbs.extend_from_slice(&enc);
        let good_mac = TsigAlgorithm::HmacSha1.mac(&k.secret, &tbs).unwrap();
        let bad_mac = TsigAlgorithm::HmacSha1.mac(&other.secret, &tbs).unwrap();

        let signed = |mac: Vec<u8>| {
            let mut r = response.clone();
            r.set_signature(Box::new(make_tsig_record(k.name.clone(), stub.clone().set_mac(mac))));
            r.to_vec().unwrap()
        };
        let ok = signed(good_mac);
        ResponseVerifier::new(&k, request_mac.clone()).verify(&ok, &Message::from_vec(&ok).unwrap(), now).unwrap();
        let err = ResponseVerifier::new(&k, request_mac.clone())
            .verify(&ok, &Message::from_vec(&ok).unwrap(), now + 301)
            .unwrap_err();
        assert!(err.contains("check clocks"), "{err}");
        let bad = signed(bad_mac);
        let err = ResponseVerifier::new(&k, request_mac.clone())
            .verify(&bad, &Message::from_vec(&bad).unwrap(), now)
            .unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        let plain = response.to_vec().unwrap();
        let err = ResponseVerifier::new(&k, request_mac)
            .verify(&plain, &Message::from_vec(&plain).unwrap(), now)
            .unwrap_err();
        assert!(err.contains("not signed"), "{err}");
    }

    /// A stand-in server on 127.0.0.1 (same port for UDP and TCP) answering with `answer`,
    /// which gets the request and whether it came over TCP. Returns the port.
    async fn fake_server<F>(answer: F) -> u16
    where
        F: Fn(&Message, bool) -> Option<Message> + Send + Sync + 'static,
    {
        let answer = std::sync::Arc::new(answer);
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().unwrap().port();
        let a = answer.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(resp) = Message::from_vec(&buf[..n]).ok().and_then(|m| a(&m, false)) {
                    let _ = udp.send_to(&resp.to_vec().unwrap(), from).await;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let a = answer.clone();
                tokio::spawn(async move {
                    let len = stream.read_u16().await.unwrap();
                    let mut buf = vec![0u8; usize::from(len)];
                    stream.read_exact(&mut buf).await.unwrap();
                    if let Some(resp) = a(&Message::from_vec(&buf).unwrap(), true) {
                        let bytes = resp.to_vec().unwrap();
                        stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
                        stream.write_all(&bytes).await.unwrap();
                    }
                });
            }
        });
        port
    }

    fn soa_answer(query: &Message) -> Message {
        let name = absolute_name("example.test").unwrap();
        let soa = rdata::SOA::new(
            absolute_name("ns1.example.test").unwrap(),
            absolute_name("h.example.test").unwrap(),
            1,
            1,
            1,
            1,
            1,
        );
        let mut resp = Message::response(query.metadata.id, OpCode::Query);
        resp.metadata.authoritative = true;
        resp.add_answer(Record::from_rdata(name, 300, RData::SOA(soa)));
        resp
    }

    fn test_provider(port: u16, tsig: bool) -> Rfc2136Provider {
        let mut c = Rfc2136Config::new("127.0.0.1", port, vec!["example.test".into()]);
        c.timeout = Duration::from_secs(2);
        if tsig {
            c.tsig = Some(TsigConfig {
                key_name: "externaldns-key".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: SECRET.into(),
            });
        }
        Rfc2136Provider::new(c).unwrap()
    }

    #[test]
    fn check_refuses_client_side_what_apply_would_refuse_naming_the_record() {
        let p = test_provider(9, false);
        let long = format!("{}.{}.{}.{}.example.test", "a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(50));
        let ok = Change::Create(Endpoint::new(long.clone(), RecordType::A, vec!["192.0.2.1".into()]));
        assert_eq!(p.check(&zone(), &ok), Ok(()));
        // Its external-dns TXT name is 6 octets longer than a name may be.
        let txt_name = format!("cname-{long}");
        let txt =
            Change::Create(Endpoint::new(txt_name.clone(), RecordType::TXT, vec!["heritage=external-dns".into()]));
        let refused = p.check(&zone(), &txt);
        let Err(ProviderError::Rejected(m)) = &refused else { panic!("must be refused: {refused:?}") };
        assert!(m.contains(&txt_name), "{m}");
    }

    #[tokio::test]
    async fn truncated_udp_answer_is_retried_over_tcp() {
        let tcp_queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = tcp_queries.clone();
        let port = fake_server(move |q, tcp| {
            if tcp {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Some(soa_answer(q));
            }
            let mut truncated = Message::response(q.metadata.id, OpCode::Query);
            truncated.metadata.truncation = true;
            Some(truncated)
        })
        .await;
        let zones = test_provider(port, false).zones().await.unwrap();
        assert_eq!(zones, vec![Zone::named("example.test")]);
        assert_eq!(tcp_queries.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zone_the_server_does_not_serve_is_not_found() {
        let port = fake_server(|q, _| {
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.response_code = ResponseCode::NXDomain;
            Some(r)
        })
        .await;
        match test_provider(port, false).zones().await {
            Err(ProviderError::ZoneNotFound(m)) => {
                assert!(m.contains("example.test") && m.contains("NXDOMAIN"), "{m}")
            }
            other => panic!("expected ZoneNotFound, got {other:?}"),
        }
    }

    /// A forged or misconfigured success must not be taken for one.
    #[tokio::test]
    async fn unsigned_success_to_a_signed_update_is_not_trusted() {
        let port = fake_server(|q, _| Some(Message::response(q.metadata.id, OpCode::Update))).await;
        let results =
            test_provider(port, true).apply(&zone(), &[create("a.example.test", RecordType::A, &["192.0.2.1"])]).await;
        match &results[..] {
            [Err(ProviderError::AuthFailed(m))] => assert!(m.contains("not signed"), "{m}"),
            other => panic!("expected one AuthFailed, got {other:?}"),
        }
    }

    /// The server refuses any UPDATE touching a name that starts with "bad": bisection applies
    /// every other change and pins the refusal on the bad ones; a change too large for one
    /// message is rejected without being sent.
    #[tokio::test]
    async fn a_refused_batch_is_bisected_down_to_the_bad_changes() {
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let seen = messages.clone();
        let port = fake_server(move |q, _| {
            seen.lock().unwrap().push(q.authorities.len());
            let mut r = Message::response(q.metadata.id, OpCode::Update);
            if q.authorities.iter().any(|u| u.name.to_ascii().starts_with("bad")) {
                r.metadata.response_code = ResponseCode::YXRRSet;
            }
            Some(r)
        })
        .await;
        let mut c = test_provider(port, false).config().clone();
        c.batch_size = 8;
        let p = Rfc2136Provider::new(c).unwrap();
        let huge: Vec<String> = (0..300).map(|i| format!("{i:0>250}")).collect();
        let huge: Vec<&str> = huge.iter().map(String::as_str).collect();
        let changes: Vec<Change> = (0..8)
            .map(|i| match i {
                2 | 5 => create(&format!("bad{i}.example.test"), RecordType::A, &["192.0.2.1"]),
                6 => create("huge.example.test", RecordType::TXT, &huge),
                _ => create(&format!("ok{i}.example.test"), RecordType::A, &["192.0.2.1"]),
            })
            .collect();
        let results = p.apply(&zone(), &changes).await;
        for (i, r) in results.iter().enumerate() {
            match (i, r) {
                (2 | 5, Err(ProviderError::Rejected(m))) => assert!(m.contains("YXRRSET"), "{m}"),
                (6, Err(ProviderError::Rejected(m))) => assert!(m.contains("too large"), "{m}"),
                (0 | 1 | 3 | 4 | 7, Ok(Applied::Live)) => {}
                other => panic!("unexpected result {other:?}"),
            }
        }
        // Bisection costs a few messages per refused change, not one message per change.
        let sent = messages.lock().unwrap().clone();
        assert!(sent.len() <= 12, "bisection sent {} messages: {sent:?}", sent.len());
    }

    /// Nothing answers: every change fails Unreachable after one timeout, not one per batch.
    #[tokio::test]
    async fn a_silent_server_costs_one_timeout() {
        let port = fake_server(|_, _| None).await;
        let mut c = test_provider(port, true).config().clone();
        c.timeout = Duration::from_millis(300);
        c.batch_size = 1;
        let p = Rfc2136Provider::new(c).unwrap();
        let changes: Vec<Change> =
            (0..5).map(|i| create(&format!("r{i}.example.test"), RecordType::A, &["192.0.2.1"])).collect();
        let start = std::time::Instant::now();
        let results = p.apply(&zone(), &changes).await;
        assert!(start.elapsed() < Duration::from_millis(1000), "took {:?}", start.elapsed());
        assert!(results.iter().all(|r| matches!(r, Err(ProviderError::Unreachable(_)))), "{results:?}");
        assert!(
            matches!(&results[4], Err(ProviderError::Unreachable(m)) if m.starts_with("not sent after")),
            "{results:?}"
        );
        assert!(matches!(p.records(&zone()).await, Err(ProviderError::Unreachable(_))));
    }

    #[test]
    fn every_algorithm_signs_with_its_mac_length() {
        for (alg, len) in [
            (TsigAlgorithm::HmacSha1, 20),
            (TsigAlgorithm::HmacSha224, 28),
            (TsigAlgorithm::HmacSha256, 32),
            (TsigAlgorithm::HmacSha384, 48),
            (TsigAlgorithm::HmacSha512, 64),
        ] {
            let mut m = Message::new(1, MessageType::Query, OpCode::Update);
            assert_eq!(key(alg).sign(&mut m, 1).unwrap().len(), len, "{alg}");
            assert!(m.signature().is_some());
        }
    }
}
