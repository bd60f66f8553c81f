//! The `embedded` provider: extdns itself is the authoritative DNS server for its zones.
//!
//! Records live in an [`InMemoryProvider`]; the planner writes them through the [`Provider`]
//! trait like for any other backend, and a small UDP/TCP server answers queries from them.
//! Answers are read from the store itself, under its read lock for the whole answer: one
//! answer never mixes two generations, a change is served by the very next query, and the
//! server holds no second copy of the zones (at 10,000 records the copy it used to keep cost
//! 600 bytes a record).
//!
//! Behaviour worth knowing when reading answers:
//! - The server is authoritative only (AA set, RA clear, no recursion). Names outside the
//!   configured zones get REFUSED, as do zone transfers (AXFR/IXFR) and classes other than IN.
//! - The apex SOA and NS sets are synthesised; NS and CNAME records at an apex are refused by
//!   [`Provider::apply`] because they would contradict them.
//! - NS records below an apex are delegations: queries at or below them get a referral.
//! - ANY queries are answered with every RRset at the name (no RFC 8482 minimisation), and do
//!   not follow CNAMEs.
//! - Over UDP, answers are capped at the client's EDNS payload size (512 without EDNS) and at
//!   [`MAX_UDP_PAYLOAD`]; a larger answer is sent with TC set and empty sections so the client
//!   retries over TCP.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::inmemory::{InMemoryProvider, StoreView};
use extdns_core::endpoint::{normalize_name, validate_name, Endpoint, RecordKey, RecordType};
use extdns_core::provider::{Change, ChangeResult, Provider, ProviderError, Zone};

/// TTL of records that do not set one.
pub const DEFAULT_TTL: u32 = 300;
/// Largest UDP answer we send whatever the client advertises: the DNS Flag Day 2020 value,
/// which avoids IP fragmentation on ordinary paths.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Negative answers are cached for at most this long (SOA minimum), so records created in a
/// demo show up within a minute even after a resolver cached their absence.
const NEGATIVE_TTL: u32 = 60;
/// CNAMEs followed inside our zones for one answer; longer chains are answered as far as this.
const MAX_CNAME_CHAIN: usize = 8;
/// A TCP client that sends nothing (or only part of a message) for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds the tasks and sockets one client flood can make us hold.
const MAX_TCP_CONNECTIONS: usize = 256;
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

/// How to run the embedded server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Zones this server is authoritative for.
    pub zones: Vec<String>,
    /// Address for both UDP and TCP. Port 0 lets the OS pick one (the same for both).
    pub listen: SocketAddr,
    /// Names served as the NS set (and the first as SOA MNAME) of every zone; when empty,
    /// `ns1.<zone>` for each zone.
    pub nameservers: Vec<String>,
    /// TTL of records that do not set one, and of the synthesised SOA and NS records.
    pub default_ttl: u32,
}

/// Why the embedded server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("binding the DNS UDP socket to {addr} failed: {source}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("binding the DNS TCP listener to {addr} failed: {source}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("zone {zone:?} is invalid: {reason}")]
    InvalidZone { zone: String, reason: String },
    #[error("nameserver {name:?} is invalid: {reason}")]
    InvalidNameserver { name: String, reason: String },
}

/// Validated, normalised configuration shared by the provider and its servers.
#[derive(Debug)]
struct ZoneSettings {
    zones: Vec<String>,
    nameservers: Vec<String>,
    default_ttl: u32,
}

impl ZoneSettings {
    fn from_config(config: &EmbeddedConfig) -> Result<Self, EmbeddedError> {
        let mut zones = Vec::new();
        for zone in &config.zones {
            let name = normalize_name(zone);
            validate_name("zone", &name)
                .map_err(|e| EmbeddedError::InvalidZone { zone: zone.clone(), reason: e.message })?;
            if name.split('.').any(|label| label == "*") {
                return Err(EmbeddedError::InvalidZone {
                    zone: zone.clone(),
                    reason: "a zone cannot be a wildcard".into(),
                });
            }
            if !zones.contains(&name) {
                zones.push(name);
            }
        }
        let mut nameservers = Vec::new();
        for ns in &config.nameservers {
            let name = normalize_name(ns);
            validate_name("nameserver", &name)
                .map_err(|e| e.message)
                .and_then(|()| parse_name(&name).map(|_| ()))
                .map_err(|reason| EmbeddedError::InvalidNameserver { name: ns.clone(), reason })?;
            if !nameservers.contains(&name) {
                nameservers.push(name);
            }
        }
        Ok(ZoneSettings { zones, nameservers, default_ttl: config.default_ttl })
    }

    fn nameservers_of(&self, zone: &str) -> Vec<String> {
        if self.nameservers.is_empty() {
            vec![format!("ns1.{zone}")]
        } else {
            self.nameservers.clone()
        }
    }
}

/// Provider whose zones are served by extdns' own DNS server. Cheap to clone; clones share
/// the records and every server started from them.
#[derive(Clone, Debug)]
pub struct EmbeddedProvider {
    store: InMemoryProvider,
    settings: Arc<ZoneSettings>,
}

/// Creates the provider for `config.zones` and serves them on `config.listen`.
pub async fn start(config: EmbeddedConfig) -> Result<(EmbeddedProvider, ServerHandle), EmbeddedError> {
    let provider = EmbeddedProvider::new(&config)?;
    let handle = provider.serve(config.listen).await?;
    Ok((provider, handle))
}

impl EmbeddedProvider {
    /// The provider without a server; records written now are served by later [`Self::serve`]s.
    pub fn new(config: &EmbeddedConfig) -> Result<Self, EmbeddedError> {
        let settings = ZoneSettings::from_config(config)?;
        let store = InMemoryProvider::new(&settings.zones);
        Ok(EmbeddedProvider { store, settings: Arc::new(settings) })
    }

    /// Serves this provider's records on `listen` (UDP and TCP) until the handle is shut down
    /// or dropped. Rebinding to a new address keeps the records: serve again, then drop the old
    /// handle.
    pub async fn serve(&self, listen: SocketAddr) -> Result<ServerHandle, EmbeddedError> {
        let (udp, tcp) = bind(listen).await?;
        let local_addr = tcp.local_addr().map_err(|source| EmbeddedError::BindTcp { addr: listen, source })?;
        let handler = Arc::new(QueryHandler::new(self.store.clone(), self.settings.clone()));
        let (stop, stop_rx) = watch::channel(());
        let tasks = vec![
            tokio::spawn(serve_udp(udp, handler.clone(), stop_rx.clone())),
            tokio::spawn(serve_tcp(tcp, handler, stop_rx)),
        ];
        info!(%local_addr, zones = ?self.settings.zones, "embedded DNS server listening");
        Ok(ServerHandle { local_addr, stop, tasks })
    }

    /// Checks what the store would accept but the server could not serve, so that the problem
    /// shows up in the record's status instead of as a silently missing answer.
    fn check_servable(zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        let ep = match change {
            Change::Delete(_) => return Ok(()),
            Change::Create(ep) | Change::Update { new: ep, .. } => ep,
        };
        if ep.dns_name == zone.name && matches!(ep.record_type, RecordType::NS | RecordType::CNAME) {
            return Err(ProviderError::Rejected(format!(
                "{}: the embedded server synthesises the SOA and NS records at the apex of {}; {} records cannot be set there",
                ep.key(),
                zone.name,
                ep.record_type
            )));
        }
        for target in &ep.targets {
            rdata_for(ep.record_type, target)
                .map_err(|reason| ProviderError::Rejected(format!("{}: {reason}", ep.key())))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for EmbeddedProvider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.store.zones().await
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        self.store.records(zone).await
    }

    async fn records_shared(&self, zone: &Zone) -> Result<Vec<Arc<Endpoint>>, ProviderError> {
        self.store.records_shared(zone).await
    }

    fn held(&self, zone: &Zone, key: &RecordKey) -> Option<Arc<Endpoint>> {
        self.store.held(zone, key)
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let checks: Vec<Result<(), ProviderError>> = changes.iter().map(|c| Self::check_servable(zone, c)).collect();
        let servable: Vec<Change> =
            changes.iter().zip(&checks).filter(|(_, check)| check.is_ok()).map(|(c, _)| c.clone()).collect();
        let mut applied = self.store.apply(zone, &servable).await.into_iter();
        checks
            .into_iter()
            .map(|check| {
                check?;
                applied.next().unwrap_or_else(|| {
                    Err(ProviderError::Rejected("the in-memory store returned fewer results than changes".into()))
                })
            })
            .collect()
    }

    fn check(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        Self::check_servable(zone, change)
    }
}

/// A running server. Dropping it stops the server; [`ServerHandle::shutdown`] also waits until
/// the sockets are closed, so the address can be bound again right after.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address (UDP and TCP share it), with the port the OS picked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and returns once both sockets are closed.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(());
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                if e.is_panic() {
                    error!(local_addr = %self.local_addr, "embedded DNS server task panicked");
                }
            }
        }
        info!(local_addr = %self.local_addr, "embedded DNS server stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.send_replace(());
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), EmbeddedError> {
    // With port 0 the OS picks a free UDP port, but another program may hold the same TCP port;
    // picking again is then the right answer, a fixed port's conflict is the user's to fix.
    let attempts = if listen.port() == 0 { 8 } else { 1 };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen).await.map_err(|source| EmbeddedError::BindUdp { addr: listen, source })?;
        let addr = udp.local_addr().map_err(|source| EmbeddedError::BindUdp { addr: listen, source })?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if attempt < attempts && source.kind() == io::ErrorKind::AddrInUse => continue,
            Err(source) => return Err(EmbeddedError::BindTcp { addr, source }),
        }
    }
}

async fn serve_udp(socket: UdpSocket, handler: Arc<QueryHandler>, mut stop: watch::Receiver<()>) {
    // Large enough for any datagram, so an oversized query is rejected by parsing, not cut.
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = tokio::select! {
            _ = stop.changed() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    debug!(error = %e, "receiving a DNS datagram failed");
                    continue;
                }
            },
        };
        let Some(response) = handler.respond(&buf[..len], Transport::Udp) else {
            continue;
        };
        if let Err(e) = socket.send_to(&response, peer).await {
            debug!(%peer, error = %e, "sending a DNS answer failed");
        }
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<QueryHandler>, mut stop: watch::Receiver<()>) {
    // Connection tasks live in the set so that they end when this task ends.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        error!("embedded DNS TCP connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_TCP_CONNECTIONS {
                        debug!(%peer, "too many DNS TCP connections; closing the new one");
                        continue;
                    }
                    connections.spawn(serve_tcp_connection(stream, peer, handler.clone(), stop.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors: retrying at once would spin.
                    warn!(error = %e, "accepting a DNS TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<QueryHandler>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let request = tokio::select! {
            _ = stop.changed() => return,
            read = tokio::time::timeout(TCP_IDLE_TIMEOUT, read_frame(&mut stream)) => match read {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "reading a DNS TCP message failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "closing idle DNS TCP connection");
                    return;
                }
            },
        };
        let Some(response) = handler.respond(&request, Transport::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "writing a DNS TCP answer failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "DNS TCP client does not read its answers; closing");
                return;
            }
        }
    }
}

/// One length-prefixed message (RFC 1035 4.2.2), or `None` at a clean end of stream.
async fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Turns request bytes into response bytes; shared by the UDP and TCP tasks of one server.
struct QueryHandler {
    store: InMemoryProvider,
    settings: Arc<ZoneSettings>,
    zones: RwLock<Zones>,
}

impl QueryHandler {
    fn new(store: InMemoryProvider, settings: Arc<ZoneSettings>) -> Self {
        let zones = Zones::load(&store.view(), &settings);
        QueryHandler { store, settings, zones: RwLock::new(zones) }
    }

    /// The zones of the store's current zone set, rebuilt first when that set changed.
    /// `view` must be taken before: every query takes the store's lock, then this one.
    fn zones(&self, view: &StoreView<'_>) -> RwLockReadGuard<'_, Zones> {
        {
            let current = self.zones.read().unwrap_or_else(PoisonError::into_inner);
            if current.generation == view.zones_generation() {
                return current;
            }
        }
        {
            let mut current = self.zones.write().unwrap_or_else(PoisonError::into_inner);
            if current.generation != view.zones_generation() {
                *current = Zones::load(view, &self.settings);
            }
        }
        self.zones.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `None` means send nothing: the input was not a query we can parse.
    fn respond(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        // A bug triggered by one odd query must cost that query, not the server.
        match catch_unwind(AssertUnwindSafe(|| self.respond_unguarded(packet, transport))) {
            Ok(response) => response,
            Err(_) => {
                error!(?transport, "answering a DNS query panicked; dropping it");
                None
            }
        }
    }

    fn respond_unguarded(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(e) => {
                debug!(?transport, error = %e, "dropping a malformed DNS message");
                return None;
            }
        };
        // Answering responses is how two servers end up in a reflection loop.
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let response = answer(&request, || {
            let view = self.store.view();
            let zones = self.zones(&view);
            (view, zones)
        });
        let limit = match transport {
            Transport::Udp => usize::from(request.max_payload().min(MAX_UDP_PAYLOAD)),
            Transport::Tcp => usize::from(u16::MAX),
        };
        encode(response, limit)
    }
}

/// The response to a parsed query; the store is only read for queries that need data.
fn answer<'s, Z: std::ops::Deref<Target = Zones>>(
    request: &Message,
    read: impl FnOnce() -> (StoreView<'s>, Z),
) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    if let Some(client_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(edns);
        if client_edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return response;
        }
    }
    if request.metadata.op_code != OpCode::Query {
        response.add_queries(request.queries.iter().cloned());
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(query.clone());
    let qtype = query.query_type();
    if query.query_class() != DNSClass::IN || matches!(qtype, WireType::AXFR | WireType::IXFR) {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    let resolution = {
        let (view, zones) = read();
        resolve(&Served { view: &view, zones: &zones }, query.name(), qtype)
    };
    debug!(name = %query.name(), %qtype, rcode = %resolution.rcode, answers = resolution.answers.len(), "answered DNS query");
    response.metadata.authoritative = resolution.authoritative;
    response.metadata.response_code = resolution.rcode;
    response.answers = resolution.answers;
    response.authorities = resolution.authorities;
    response.additionals = resolution.additionals;
    response
}

/// Wire bytes of `response`, fitted into `limit`: additional records go first (they are
/// optional), then everything but the question with TC set so the client retries over TCP.
fn encode(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = match response.to_vec() {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(error = %e, "encoding a DNS answer failed; answering SERVFAIL");
            let mut failure = response.truncate();
            failure.metadata.truncation = false;
            failure.metadata.response_code = ResponseCode::ServFail;
            return failure.to_vec().ok();
        }
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    if !response.additionals.is_empty() {
        response.additionals.clear();
        if let Ok(bytes) = response.to_vec() {
            if bytes.len() <= limit {
                return Some(bytes);
            }
        }
    }
    response.truncate().to_vec().ok()
}

/// What [`resolve`] decided; mapped onto the response message by [`answer`].
#[derive(Debug, Default)]
struct Resolution {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Resolution {
    fn no_data(mut self, served: &Served, zone: &ZoneData) -> Self {
        self.authorities.push(zone.negative_soa(served.serial()));
        self
    }

    fn nx_domain(mut self, served: &Served, zone: &ZoneData) -> Self {
        self.rcode = ResponseCode::NXDomain;
        self.authorities.push(zone.negative_soa(served.serial()));
        self
    }
}

/// Answers one question from the store (RFC 1034 4.3.2 without recursion, RFC 4592 wildcards).
fn resolve(served: &Served, qname: &Name, qtype: WireType) -> Resolution {
    let Some(mut zone) = served.zone_for(qname) else {
        return Resolution { rcode: ResponseCode::Refused, ..Resolution::default() };
    };
    let mut res = Resolution { authoritative: true, ..Resolution::default() };
    // Owners echo the question's spelling; names reached through CNAMEs are spelled as stored.
    let mut owner = qname.clone();
    let mut followed: HashSet<String> = HashSet::new();
    loop {
        let key = name_key(&owner);
        // The parent side of a cut holds no DS here, so a DS query at the cut is answered below.
        if let Some(cut) = served.delegation(zone, &owner, qtype == WireType::DS) {
            if res.answers.is_empty() {
                return served.referral(zone, &owner, &cut);
            }
            // A CNAME led into a delegated subtree: the resolver continues from the target.
            return res;
        }
        let node = match served.node(zone, &key) {
            Some(node) => node,
            None if served.view.has_names_below(&key) => return res.no_data(served, zone),
            None => match served.wildcard_for(zone, &owner) {
                Some(node) => node,
                None => return res.nx_domain(served, zone),
            },
        };
        if qtype == WireType::ANY {
            for rrset in &node.rrsets {
                push_rrset(&mut res.answers, &owner, rrset);
            }
            return res;
        }
        if let Some(rrset) = node.get(qtype) {
            push_rrset(&mut res.answers, &owner, rrset);
            if qtype == WireType::NS {
                res.additionals = served.glue(rrset);
            }
            return res;
        }
        let cname = match node.get(WireType::CNAME) {
            Some(cname) if qtype != WireType::CNAME => cname,
            _ => return res.no_data(served, zone),
        };
        // A loop or an over-long chain ends the answer where it stands, as BIND does.
        if !followed.insert(key) || followed.len() > MAX_CNAME_CHAIN {
            return res;
        }
        push_rrset(&mut res.answers, &owner, cname);
        let Some(RData::CNAME(CNAME(target))) = cname.values.first() else {
            return res;
        };
        match served.zone_for(target) {
            Some(target_zone) => {
                zone = target_zone;
                owner = target.clone();
            }
            // Outside our zones: the resolver follows it.
            None => return res,
        }
    }
}

fn push_rrset(out: &mut Vec<Record>, owner: &Name, rrset: &RRset) {
    out.extend(rrset.values.iter().map(|rdata| Record::from_rdata(owner.clone(), rrset.ttl, rdata.clone())));
}

/// Lower-case presentation form without the final dot: the key of names in the store, in
/// the same form as [`Endpoint::dns_name`].
fn name_key(name: &Name) -> String {
    super::wire_name::to_text(name)
}

fn parse_name(name: &str) -> Result<Name, String> {
    super::wire_name::to_wire(&format!("{}.", name.trim_end_matches('.')))
}

/// The zones served, as of one zone set of the store: what the server synthesises at each
/// apex. The records are read from the store itself at each query; the server keeps no copy.
#[derive(Debug)]
struct Zones {
    /// The store's zone-set generation these were built from.
    generation: u64,
    /// Most labels first, so the first zone containing a name is the closest one.
    list: Vec<ZoneData>,
}

impl Zones {
    fn load(view: &StoreView<'_>, settings: &ZoneSettings) -> Zones {
        let mut list: Vec<ZoneData> = view
            .zone_names()
            .filter_map(|zone| match ZoneData::new(zone, &settings.nameservers_of(zone), settings.default_ttl) {
                Ok(data) => Some(data),
                Err(reason) => {
                    warn!(zone, %reason, "not serving zone");
                    None
                }
            })
            .collect();
        list.sort_by_key(|z| std::cmp::Reverse(z.apex_labels));
        Zones { generation: view.zones_generation(), list }
    }
}

#[derive(Debug)]
struct ZoneData {
    apex: Name,
    /// The apex as the store names the zone.
    key: String,
    apex_labels: usize,
    default_ttl: u32,
    /// The SOA at serial 0: each answer sets the store's generation.
    soa: SOA,
    nameservers: Vec<Name>,
}

/// One name's data as an answer needs it, read from the store for one query.
#[derive(Debug, Default)]
struct Node {
    rrsets: Vec<RRset>,
}

#[derive(Debug)]
struct RRset {
    record_type: WireType,
    ttl: u32,
    values: Vec<RData>,
}

impl Node {
    fn get(&self, record_type: WireType) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.record_type == record_type)
    }

    /// Adds data; endpoints of one name and type with different set identifiers are served as
    /// one RRset, at the lowest TTL among them.
    fn add(&mut self, record_type: WireType, ttl: u32, rdatas: Vec<RData>) {
        match self.rrsets.iter_mut().find(|r| r.record_type == record_type) {
            Some(rrset) => {
                rrset.ttl = rrset.ttl.min(ttl);
                for rdata in rdatas {
                    if !rrset.values.contains(&rdata) {
                        rrset.values.push(rdata);
                    }
                }
            }
            None => self.rrsets.push(RRset { record_type, ttl, values: rdatas }),
        }
    }

    fn add_endpoint(&mut self, ep: &Endpoint, default_ttl: u32) {
        let mut rdatas = Vec::with_capacity(ep.targets.len());
        for target in &ep.targets {
            match rdata_for(ep.record_type, target) {
                Ok(rdata) => rdatas.push(rdata),
                // `apply` refuses what cannot be served; only a seeded record gets here.
                Err(reason) => debug!(record = %ep.key(), %reason, "not serving a record value"),
            }
        }
        if !rdatas.is_empty() {
            self.add(super::wire_type(ep.record_type), ep.ttl.unwrap_or(default_ttl), rdatas);
        }
    }
}

/// The store as one query reads it: the records under one lock, and the zones' apex data.
struct Served<'a> {
    view: &'a StoreView<'a>,
    zones: &'a Zones,
}

impl Served<'_> {
    /// SOA serials compare with RFC 1982 arithmetic, so wrapping around is harmless.
    fn serial(&self) -> u32 {
        self.view.generation() as u32
    }

    fn zone_for(&self, name: &Name) -> Option<&ZoneData> {
        self.zones.list.iter().find(|z| z.apex.zone_of(name))
    }

    /// What is served at `key` in `zone`: the store's records there and, at the apex, the
    /// synthesised SOA and NS. `None` when nothing is.
    fn node(&self, zone: &ZoneData, key: &str) -> Option<Node> {
        let mut node = Node::default();
        let apex = key == zone.key;
        if apex {
            let mut soa = zone.soa.clone();
            soa.serial = self.serial();
            node.add(WireType::SOA, zone.default_ttl, vec![RData::SOA(soa)]);
            node.add(
                WireType::NS,
                zone.default_ttl,
                zone.nameservers.iter().map(|n| RData::NS(NS(n.clone()))).collect(),
            );
        }
        for ep in self.view.at(&zone.key, key) {
            if apex && matches!(ep.record_type, RecordType::NS | RecordType::CNAME) {
                debug!(record = %ep.key(), "ignoring a record that would contradict the synthesised apex");
                continue;
            }
            node.add_endpoint(ep, zone.default_ttl);
        }
        (!node.rrsets.is_empty()).then_some(node)
    }

    /// The name exists: it holds records, or names below it do.
    fn exists(&self, zone: &ZoneData, key: &str) -> bool {
        key == zone.key || self.view.at(&zone.key, key).next().is_some() || self.view.has_names_below(key)
    }

    /// A/AAAA records we hold for the hosts of an NS set, so resolvers need not look them up.
    fn glue(&self, ns: &RRset) -> Vec<Record> {
        let mut glue = Vec::new();
        for value in &ns.values {
            let RData::NS(NS(host)) = value else { continue };
            let Some(node) = self.zone_for(host).and_then(|z| self.node(z, &name_key(host))) else {
                continue;
            };
            for record_type in [WireType::A, WireType::AAAA] {
                if let Some(rrset) = node.get(record_type) {
                    push_rrset(&mut glue, host, rrset);
                }
            }
        }
        glue
    }

    /// Points the resolver at the servers of the delegated subtree `cut` (key of the NS owner).
    fn referral(&self, zone: &ZoneData, owner: &Name, cut: &str) -> Resolution {
        let mut res = Resolution::default();
        let Some(node) = self.node(zone, cut) else { return res };
        let Some(ns) = node.get(WireType::NS) else { return res };
        let cut_labels = cut.split('.').count();
        let cut_name = owner.trim_to(cut_labels);
        push_rrset(&mut res.authorities, &cut_name, ns);
        res.additionals = self.glue(ns);
        res
    }

    /// The topmost NS owner strictly between the apex and `name` (or at `name`, unless
    /// `below_only`): where our authority ends.
    fn delegation(&self, zone: &ZoneData, name: &Name, below_only: bool) -> Option<String> {
        let labels = name.iter().len();
        let deepest = if below_only { labels.saturating_sub(1) } else { labels };
        (zone.apex_labels + 1..=deepest).find_map(|n| {
            let key = name_key(&name.trim_to(n));
            let cut = self.view.at(&zone.key, &key).any(|ep| ep.record_type == RecordType::NS);
            cut.then_some(key)
        })
    }

    /// The RFC 4592 source of synthesis for a name that does not exist: the `*` child of its
    /// closest encloser, if there is one.
    fn wildcard_for(&self, zone: &ZoneData, name: &Name) -> Option<Node> {
        let labels = name.iter().len();
        (zone.apex_labels..labels).rev().find_map(|n| {
            let encloser = name_key(&name.trim_to(n));
            self.exists(zone, &encloser).then(|| self.node(zone, &format!("*.{encloser}")))
        })?
    }
}

impl ZoneData {
    fn new(zone: &str, nameservers: &[String], default_ttl: u32) -> Result<ZoneData, String> {
        let apex = parse_name(zone)?;
        let hostmaster = parse_name(&format!("hostmaster.{zone}"))?;
        let nameservers = nameservers.iter().map(|ns| parse_name(ns)).collect::<Result<Vec<_>, _>>()?;
        let mname = nameservers.first().cloned().ok_or("no nameservers")?;
        let negative_ttl = default_ttl.min(NEGATIVE_TTL);
        let soa = SOA::new(mname, hostmaster, 0, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, negative_ttl);
        Ok(ZoneData { apex_labels: apex.iter().len(), key: name_key(&apex), apex, default_ttl, soa, nameservers })
    }

    /// RFC 2308: a negative answer is cached for min(SOA TTL, SOA minimum).
    fn negative_soa(&self, serial: u32) -> Record {
        let mut soa = self.soa.clone();
        soa.serial = serial;
        Record::from_rdata(self.apex.clone(), self.default_ttl.min(NEGATIVE_TTL), RData::SOA(soa))
    }
}

fn rdata_for(record_type: RecordType, target: &str) -> Result<RData, String> {
    let target = target.trim();
    let number =
        |field: &str, what: &str| field.parse::<u16>().map_err(|_| format!("{what} {field:?} is not a number 0-65535"));
    match record_type {
        RecordType::A => target
            .parse::<Ipv4Addr>()
            .map(|ip| RData::A(A(ip)))
            .map_err(|_| format!("{target:?} is not an IPv4 address")),
        RecordType::AAAA => target
            .parse::<Ipv6Addr>()
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| format!("{target:?} is not an IPv6 address")),
        RecordType::CNAME => parse_name(target).map(|n| RData::CNAME(CNAME(n))),
        RecordType::NS => parse_name(target).map(|n| RData::NS(NS(n))),
        RecordType::PTR => parse_name(target).map(|n| RData::PTR(PTR(n))),
        RecordType::MX => match target.split_whitespace().collect::<Vec<_>>().as_slice() {
            [preference, host] => Ok(RData::MX(MX::new(number(preference, "MX preference")?, parse_name(host)?))),
            _ => Err(format!("{target:?} is not \"<preference> <host>\"")),
        },
        RecordType::SRV => match target.split_whitespace().collect::<Vec<_>>().as_slice() {
            [priority, weight, port, host] => Ok(RData::SRV(SRV::new(
                number(priority, "SRV priority")?,
                number(weight, "SRV weight")?,
                number(port, "SRV port")?,
                parse_name(host)?,
            ))),
            _ => Err(format!("{target:?} is not \"<priority> <weight> <port> <host>\"")),
        },
        // A character-string holds at most 255 bytes (RFC 1035 3.3); longer values are split
        // and resolvers concatenate them again (RFC 7208 3.3).
        RecordType::TXT if target.is_empty() => Ok(RData::TXT(TXT::from_bytes(vec![&b""[..]]))),
        RecordType::TXT => Ok(RData::TXT(TXT::from_bytes(target.as_bytes().chunks(255).collect()))),
        RecordType::CAA => caa_rdata(target),
    }
}

fn caa_rdata(target: &str) -> Result<RData, String> {
    let mut parts = target.splitn(3, ' ');
    let (Some(flags), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{target:?} is not \"<flags> <tag> <value>\""));
    };
    let flags: u8 = flags.parse().map_err(|_| format!("CAA flags {flags:?} are not a number 0-255"))?;
    if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("CAA tag {tag:?} must be 1-15 letters or digits"));
    }
    let value = value.trim();
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    };
    // The tag-specific constructors would re-encode (and reject) values; the raw property is
    // what the user asked to publish, so set the fields directly.
    let mut caa = CAA::new_issue(false, None, Vec::new());
    caa.issuer_critical = flags & 0b1000_0000 != 0;
    caa.reserved_flags = flags & 0b0111_1111;
    caa.tag = tag.to_string();
    caa.value = value.into_bytes();
    Ok(RData::CAA(caa))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;

    use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::{Name, RData, RecordType as WireType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;

    const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

    fn config(zones: &[&str]) -> EmbeddedConfig {
        EmbeddedConfig {
            zones: zones.iter().map(|z| z.to_string()).collect(),
            listen: "127.0.0.1:0".parse().unwrap(),
            nameservers: Vec::new(),
            default_ttl: 300,
        }
    }

    async fn create(p: &EmbeddedProvider, zone: &str, eps: Vec<Endpoint>) {
        let changes: Vec<Change> = eps.into_iter().map(Change::Create).collect();
        for r in p.apply(&Zone::named(zone), &changes).await {
            r.unwrap();
        }
    }

    fn ep(name: &str, rt: RecordType, targets: &[&str]) -> Endpoint {
        Endpoint::new(name, rt, targets.iter().map(|t| t.to_string()).collect())
    }

    /// Serves example.com with a small set of records most tests use.
    async fn example_server() -> (EmbeddedProvider, ServerHandle) {
        let (p, h) = start(config(&["example.com", "other.test"])).await.unwrap();
        create(
            &p,
            "example.com",
            vec![
                ep("api.example.com", RecordType::A, &["192.0.2.10"]).with_ttl(120),
                ep("api.example.com", RecordType::AAAA, &["2001:db8::10"]),
                ep("www.example.com", RecordType::CNAME, &["api.example.com"]),
                ep("ext.example.com", RecordType::CNAME, &["elb.amazonaws.com"]),
                ep("dangling.example.com", RecordType::CNAME, &["nothing.b.example.com"]),
                ep("cross.example.com", RecordType::CNAME, &["host.other.test"]),
                ep("loop1.example.com", RecordType::CNAME, &["loop2.example.com"]),
                ep("loop2.example.com", RecordType::CNAME, &["loop1.example.com"]),
                ep("*.example.com", RecordType::A, &["192.0.2.99"]),
                ep("deep.b.example.com", RecordType::A, &["192.0.2.20"]),
                ep("*.sub.example.com", RecordType::TXT, &["wild sub"]),
                ep("ns1.example.com", RecordType::A, &["192.0.2.53"]),
                ep("example.com", RecordType::MX, &["10 mail.example.com"]),
                ep("_sip._tcp.example.com", RecordType::SRV, &["10 20 5060 sip.example.com"]),
                ep("example.com", RecordType::CAA, &["0 issue \"letsencrypt.org\""]),
                ep("child.example.com", RecordType::NS, &["ns.child.example.com"]),
                ep("ns.child.example.com", RecordType::A, &["192.0.2.54"]),
            ],
        )
        .await;
        create(&p, "other.test", vec![ep("host.other.test", RecordType::A, &["198.51.100.1"])]).await;
        (p, h)
    }

    fn query_bytes(name: &str, rt: WireType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rt));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    async fn udp_exchange(addr: SocketAddr, packet: &[u8]) -> Message {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(packet, addr).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) =
            tokio::time::timeout(CLIENT_TIMEOUT, sock.recv_from(&mut buf)).await.expect("no UDP answer").unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    async fn udp(addr: SocketAddr, name: &str, rt: WireType) -> Message {
        udp_exchange(addr, &query_bytes(name, rt, None)).await
    }

    async fn tcp_send(stream: &mut TcpStream, packet: &[u8]) {
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(packet);
        stream.write_all(&framed).await.unwrap();
    }

    async fn tcp_recv(stream: &mut TcpStream) -> Message {
        let read = async {
            let len = stream.read_u16().await.unwrap();
            let mut buf = vec![0u8; len as usize];
            stream.read_exact(&mut buf).await.unwrap();
            buf
        };
        let buf = tokio::time::timeout(CLIENT_TIMEOUT, read).await.expect("no TCP answer");
        Message::from_vec(&buf).unwrap()
    }

    async fn tcp(addr: SocketAddr, name: &str, rt: WireType) -> Message {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        tcp_send(&mut stream, &query_bytes(name, rt, None)).await;
        tcp_recv(&mut stream).await
    }

    fn ips(m: &Message) -> Vec<IpAddr> {
        ips_of(&m.answers)
    }

    fn ips_of(records: &[Record]) -> Vec<IpAddr> {
        records
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(IpAddr::V4(*ip)),
                RData::AAAA(AAAA(ip)) => Some(IpAddr::V6(*ip)),
                _ => None,
            })
            .collect()
    }

    fn soa_serial(r: &Record) -> u32 {
        match &r.data {
            RData::SOA(soa) => soa.serial,
            other => panic!("expected SOA, got {other:?}"),
        }
    }

    /// Answers follow the store change by change, read from it at each query: creates,
    /// updates and deletes at the apex, under wildcards, below empty non-terminals (which
    /// come and go with the names below them), and across a zone-set change.
    #[tokio::test]
    async fn embedded_answers_follow_the_store_change_by_change() {
        let (p, h) = start(config(&["example.org", "sub.example.org"])).await.unwrap();
        let addr = h.local_addr();
        let zone = Zone::named("example.org");
        let sub = Zone::named("sub.example.org");
        let a = |name: &str, ip: &str| ep(name, RecordType::A, &[ip]);
        let apply = |z: &Zone, changes: Vec<Change>| {
            let (p, z) = (p.clone(), z.clone());
            async move {
                for r in p.apply(&z, &changes).await {
                    r.unwrap();
                }
            }
        };
        let rcode = |m: &Message| m.metadata.response_code;
        apply(
            &zone,
            vec![Change::Create(a("example.org", "192.0.2.1")), Change::Create(a("a.b.c.example.org", "192.0.2.2"))],
        )
        .await;
        apply(
            &zone,
            vec![
                Change::Create(a("*.w.example.org", "192.0.2.3")),
                Change::Create(ep("t.example.org", RecordType::TXT, &["v"])),
            ],
        )
        .await;
        apply(&sub, vec![Change::Create(a("x.sub.example.org", "192.0.2.4"))]).await;
        assert_eq!(ips(&udp(addr, "example.org.", WireType::A).await), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]);
        assert_eq!(ips(&udp(addr, "any.w.example.org.", WireType::A).await), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3))]);
        // Empty non-terminals: NODATA, and no wildcard below them.
        for name in ["b.c.example.org.", "c.example.org."] {
            let m = udp(addr, name, WireType::A).await;
            assert_eq!((rcode(&m), m.answers.len()), (ResponseCode::NoError, 0), "{name}");
        }
        apply(
            &zone,
            vec![Change::Update { old: a("a.b.c.example.org", "192.0.2.2"), new: a("a.b.c.example.org", "192.0.2.9") }],
        )
        .await;
        assert_eq!(ips(&udp(addr, "a.b.c.example.org.", WireType::A).await), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))]);
        apply(
            &zone,
            vec![
                Change::Create(a("d.c.example.org", "192.0.2.5")),
                Change::Delete(a("a.b.c.example.org", "192.0.2.9")),
            ],
        )
        .await;
        assert_eq!(rcode(&udp(addr, "b.c.example.org.", WireType::A).await), ResponseCode::NXDomain);
        assert_eq!(rcode(&udp(addr, "c.example.org.", WireType::A).await), ResponseCode::NoError);
        apply(
            &zone,
            vec![Change::Delete(a("example.org", "192.0.2.1")), Change::Delete(a("*.w.example.org", "192.0.2.3"))],
        )
        .await;
        let m = udp(addr, "example.org.", WireType::A).await;
        assert_eq!((rcode(&m), m.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(soa_serial(&m.authorities[0]), p.store.generation() as u32);
        assert_eq!(rcode(&udp(addr, "any.w.example.org.", WireType::A).await), ResponseCode::NXDomain);
        apply(&zone, vec![Change::Create(ep("c.example.org", RecordType::CNAME, &["x.sub.example.org"]))]).await;
        apply(&zone, vec![Change::Delete(a("d.c.example.org", "192.0.2.5"))]).await;
        // c.example.org holds its CNAME (followed into the sub zone); nothing is left below it.
        let m = udp(addr, "c.example.org.", WireType::A).await;
        assert_eq!(ips(&m), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4))]);
        assert_eq!(rcode(&udp(addr, "d.c.example.org.", WireType::A).await), ResponseCode::NXDomain);
        // A zone added to the store is served at once.
        p.store.add_zone("other.example");
        apply(&Zone::named("other.example"), vec![Change::Create(a("o.other.example", "192.0.2.6"))]).await;
        assert_eq!(ips(&udp(addr, "o.other.example.", WireType::A).await), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 6))]);
    }

    #[tokio::test]
    async fn embedded_answers_a_and_aaaa_with_ttls() {
        let (_p, h) = example_server().await;
        let m = udp(h.local_addr(), "api.example.com.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(!m.metadata.recursion_available);
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]);
        assert_eq!(m.answers[0].ttl, 120);
        let m = tcp(h.local_addr(), "api.example.com.", WireType::AAAA).await;
        assert_eq!(ips(&m), vec![IpAddr::V6(Ipv6Addr::from_str("2001:db8::10").unwrap())]);
        assert_eq!(m.answers[0].ttl, 300, "default TTL");
        h.shutdown().await;
    }

    #[tokio::test]
    async fn embedded_nxdomain_and_nodata_carry_the_soa() {
        let (p, h) = example_server().await;
        let addr = h.local_addr();
        // example.com has an apex wildcard, so missing names are looked up below b.example.com.
        let nx = udp(addr, "missing.b.example.com.", WireType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.metadata.authoritative);
        assert!(nx.answers.is_empty());
        assert_eq!(nx.authorities.len(), 1);
        assert_eq!(nx.authorities[0].name, Name::from_ascii("example.com.").unwrap());
        assert_eq!(nx.authorities[0].ttl, 60, "negative answers are cached for a minute");

        let nodata = udp(addr, "api.example.com.", WireType::TXT).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(soa_serial(&nodata.authorities[0]), p.store.generation() as u32);

        // b.example.com exists only because deep.b.example.com does (sub.example.com because of
        // its wildcard): NODATA, not the apex wildcard.
        for name in ["b.example.com.", "sub.example.com."] {
            let ent = udp(addr, name, WireType::A).await;
            assert_eq!(ent.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(ent.answers.is_empty(), "{name}");
            assert_eq!(ent.authorities.len(), 1, "{name}");
        }
    }

    #[tokio::test]
    async fn embedded_synthesises_soa_and_ns_at_the_apex() {
        let (p, h) = example_server().await;
        let soa = udp(h.local_addr(), "example.com.", WireType::SOA).await;
        assert_eq!(soa.answers.len(), 1);
        let RData::SOA(data) = &soa.answers[0].data else { panic!("{soa:?}") };
        assert_eq!(data.mname, Name::from_ascii("ns1.example.com.").unwrap());
        assert_eq!(data.rname, Name::from_ascii("hostmaster.example.com.").unwrap());
        assert_eq!(data.serial, p.store.generation() as u32);
        assert_eq!((data.refresh, data.retry, data.expire, data.minimum), (3600, 600, 86400, 60));

        let ns = udp(h.local_addr(), "example.com.", WireType::NS).await;
        assert_eq!(ns.answers.len(), 1);
        assert_eq!(ns.answers[0].data, RData::NS(NS(Name::from_ascii("ns1.example.com.").unwrap())));
        assert_eq!(ips_of(&ns.additionals), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53))]);

        // Configured nameservers replace the default, for every zone.
        let mut cfg = config(&["example.net"]);
        cfg.nameservers = vec!["a.dns.test.".into(), "B.dns.test".into()];
        let (_, h2) = start(cfg).await.unwrap();
        let ns = udp(h2.local_addr(), "example.net.", WireType::NS).await;
        let hosts: Vec<String> = ns.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(hosts, vec!["a.dns.test.", "b.dns.test."]);
    }

    #[tokio::test]
    async fn embedded_names_are_case_insensitive_and_echoed() {
        let (_p, h) = example_server().await;
        let m = udp(h.local_addr(), "ApI.ExAmple.COM.", WireType::A).await;
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]);
        assert!(m.answers[0].name.eq_case(&Name::from_ascii("ApI.ExAmple.COM.").unwrap()));
        assert!(m.queries[0].name().eq_case(&Name::from_ascii("ApI.ExAmple.COM.").unwrap()));
    }

    #[tokio::test]
    async fn embedded_wildcards_answer_only_missing_names() {
        let (_p, h) = example_server().await;
        let addr = h.local_addr();
        let m = udp(addr, "anything.example.com.", WireType::A).await;
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))]);
        assert_eq!(m.answers[0].name, Name::from_ascii("anything.example.com.").unwrap());
        // Closest encloser is the apex, so deeper missing names match too.
        let m = udp(addr, "x.y.example.com.", WireType::A).await;
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))]);
        // The wildcard does not shadow an existing name with other types.
        let m = udp(addr, "api.example.com.", WireType::MX).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        // Below b.example.com (an empty non-terminal) the closest encloser is b, which has no `*`.
        let m = udp(addr, "other.b.example.com.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // A wildcard one level down.
        let m = udp(addr, "x.sub.example.com.", WireType::TXT).await;
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data.to_string(), "wild sub");
        let m = udp(addr, "x.sub.example.com.", WireType::A).await;
        assert!(m.answers.is_empty(), "the sub wildcard has no A, and the apex wildcard does not apply");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    #[tokio::test]
    async fn embedded_follows_cnames_inside_its_zones() {
        let (_p, h) = example_server().await;
        let addr = h.local_addr();
        let m = udp(addr, "WWW.example.com.", WireType::A).await;
        assert_eq!(m.answers.len(), 2);
        assert!(m.answers[0].name.eq_case(&Name::from_ascii("WWW.example.com.").unwrap()));
        assert_eq!(m.answers[0].data, RData::CNAME(CNAME(Name::from_ascii("api.example.com.").unwrap())));
        assert_eq!(m.answers[1].name, Name::from_ascii("api.example.com.").unwrap());
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]);

        let m = udp(addr, "www.example.com.", WireType::CNAME).await;
        assert_eq!(m.answers.len(), 1, "a CNAME query is not chased");

        let m = udp(addr, "cross.example.com.", WireType::A).await;
        assert_eq!(m.answers.len(), 2, "chased into another of our zones");
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))]);

        let m = udp(addr, "ext.example.com.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1, "foreign targets are left to the resolver");

        let m = udp(addr, "dangling.example.com.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "RFC 6604: the rcode is the target's");
        assert_eq!(m.answers.len(), 1);

        let m = udp(addr, "loop1.example.com.", WireType::A).await;
        assert_eq!(m.answers.len(), 2, "a loop ends after each name once");
    }

    #[tokio::test]
    async fn embedded_limits_cname_chains() {
        let (p, h) = start(config(&["chain.test"])).await.unwrap();
        let mut eps: Vec<Endpoint> = (0..12)
            .map(|i| ep(&format!("c{i}.chain.test"), RecordType::CNAME, &[&format!("c{}.chain.test", i + 1)]))
            .collect();
        eps.push(ep("c12.chain.test", RecordType::A, &["192.0.2.1"]));
        create(&p, "chain.test", eps).await;
        let m = udp(h.local_addr(), "c0.chain.test.", WireType::A).await;
        assert_eq!(m.answers.len(), MAX_CNAME_CHAIN);
        assert!(ips(&m).is_empty());
        let m = udp(h.local_addr(), "c5.chain.test.", WireType::A).await;
        assert_eq!(m.answers.len(), 8, "7 CNAMEs and the address");
    }

    #[tokio::test]
    async fn embedded_splits_long_txt_values() {
        let (p, h) = start(config(&["example.com"])).await.unwrap();
        let long: String = (0..600).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        create(&p, "example.com", vec![ep("long.example.com", RecordType::TXT, &[&long])]).await;
        let m = tcp(h.local_addr(), "long.example.com.", WireType::TXT).await;
        assert_eq!(m.answers.len(), 1);
        let RData::TXT(txt) = &m.answers[0].data else { panic!("{m:?}") };
        let lens: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lens, vec![255, 255, 90]);
        assert_eq!(txt.txt_data.concat(), long.as_bytes());
    }

    #[tokio::test]
    async fn embedded_refuses_foreign_zones_transfers_and_other_classes() {
        let (_p, h) = example_server().await;
        let m = udp(h.local_addr(), "example.org.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
        let m = udp(h.local_addr(), "notexample.com.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let m = tcp(h.local_addr(), "example.com.", WireType::AXFR).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let mut q = Message::query();
        let mut question = Query::query(Name::from_ascii("version.bind.").unwrap(), WireType::TXT);
        question.set_query_class(DNSClass::CH);
        q.add_query(question);
        let m = udp_exchange(h.local_addr(), &q.to_vec().unwrap()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[tokio::test]
    async fn embedded_truncates_large_udp_answers_and_serves_them_over_tcp() {
        let (p, h) = start(config(&["example.com"])).await.unwrap();
        let targets: Vec<String> = (0..100).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)).collect();
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        create(&p, "example.com", vec![ep("big.example.com", RecordType::A, &refs)]).await;
        let addr = h.local_addr();

        let m = udp(addr, "big.example.com.", WireType::A).await;
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        assert_eq!(m.queries.len(), 1);
        let m = udp_exchange(addr, &query_bytes("big.example.com.", WireType::A, Some(4096))).await;
        assert!(m.metadata.truncation, "capped at {MAX_UDP_PAYLOAD} even when the client allows more");
        assert!(m.edns.is_some());

        let m = tcp(addr, "big.example.com.", WireType::A).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);

        // A small answer fits in 512 bytes and is not truncated.
        create(&p, "example.com", vec![ep("small.example.com", RecordType::A, &refs[..10])]).await;
        let m = udp(addr, "small.example.com.", WireType::A).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 10);
        // ...and 60 records fit in the client's 1232-byte EDNS buffer but not in plain 512.
        create(&p, "example.com", vec![ep("mid.example.com", RecordType::A, &refs[..60])]).await;
        assert!(udp(addr, "mid.example.com.", WireType::A).await.metadata.truncation);
        let m = udp_exchange(addr, &query_bytes("mid.example.com.", WireType::A, Some(1232))).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
    }

    #[tokio::test]
    async fn embedded_serves_changes_immediately() {
        let (p, h) = example_server().await;
        let addr = h.local_addr();
        let before = udp(addr, "example.com.", WireType::SOA).await;
        let old = p
            .records(&Zone::named("example.com"))
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.dns_name == "api.example.com" && e.record_type == RecordType::A)
            .unwrap();
        let new = ep("api.example.com", RecordType::A, &["192.0.2.77"]).with_ttl(30);
        let results = p.apply(&Zone::named("example.com"), &[Change::Update { old, new }]).await;
        assert!(results[0].is_ok());
        let m = udp(addr, "api.example.com.", WireType::A).await;
        assert_eq!(ips(&m), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77))]);
        assert_eq!(m.answers[0].ttl, 30);
        let after = udp(addr, "example.com.", WireType::SOA).await;
        assert_eq!(soa_serial(&after.answers[0]), soa_serial(&before.answers[0]) + 1);

        let gone = ep("api.example.com", RecordType::A, &["192.0.2.77"]).with_ttl(30);
        p.apply(&Zone::named("example.com"), &[Change::Delete(gone)]).await[0].clone().unwrap();
        let m = udp(addr, "api.example.com.", WireType::A).await;
        assert!(m.answers.is_empty(), "AAAA still exists at the name, so NODATA");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    #[tokio::test]
    async fn embedded_shutdown_releases_the_port() {
        let (p, h) = example_server().await;
        let addr = h.local_addr();
        assert_eq!(udp(addr, "api.example.com.", WireType::A).await.answers.len(), 1);
        h.shutdown().await;
        drop(UdpSocket::bind(addr).await.expect("UDP port released"));
        drop(TcpListener::bind(addr).await.expect("TCP port released"));
        // Rebinding the same provider keeps its records.
        let h = p.serve(addr).await.unwrap();
        assert_eq!(h.local_addr(), addr);
        assert_eq!(udp(addr, "api.example.com.", WireType::A).await.answers.len(), 1);
        drop(h);
        // Dropping the handle stops the server too; the port frees once the runtime runs the
        // aborted tasks, so wait on that condition with a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if UdpSocket::bind(addr).await.is_ok() && TcpListener::bind(addr).await.is_ok() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "port still bound after drop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn embedded_reports_the_address_it_could_not_bind() {
        let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let mut cfg = config(&["example.com"]);
        cfg.listen = addr;
        let err = start(cfg).await.unwrap_err();
        assert!(matches!(err, EmbeddedError::BindUdp { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("binding the DNS UDP socket"), "{msg}");
        assert!(msg.contains(&addr.to_string()), "{msg}");

        let err = start(config(&["bad zone.com"])).await.unwrap_err();
        assert!(matches!(err, EmbeddedError::InvalidZone { .. }), "{err}");
    }

    #[tokio::test]
    async fn embedded_survives_malformed_messages() {
        let (_p, h) = example_server().await;
        let addr = h.local_addr();
        // A response is never answered either.
        let mut response = Message::response(7, OpCode::Query);
        response.add_query(Query::query(Name::from_ascii("api.example.com.").unwrap(), WireType::A));
        let response = response.to_vec().unwrap();
        let truncated_question = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www";
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for ignored in [&b""[..], &b"\x12"[..], &[0xff; 12][..], &truncated_question[..], &response[..]] {
            sock.send_to(ignored, addr).await.unwrap();
        }
        // The server handles datagrams in order, so the first reply must be to the valid query.
        let valid = Message::from_vec(&query_bytes("api.example.com.", WireType::A, None)).unwrap();
        sock.send_to(&valid.to_vec().unwrap(), addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(CLIENT_TIMEOUT, sock.recv_from(&mut buf)).await.unwrap().unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.metadata.id, valid.metadata.id);
        assert_eq!(reply.answers.len(), 1);
        // Several messages on one TCP connection, garbage in between.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        tcp_send(&mut stream, &query_bytes("api.example.com.", WireType::A, None)).await;
        tcp_send(&mut stream, b"\xde\xad").await;
        tcp_send(&mut stream, &query_bytes("www.example.com.", WireType::A, None)).await;
        assert_eq!(tcp_recv(&mut stream).await.answers.len(), 1);
        assert_eq!(tcp_recv(&mut stream).await.answers.len(), 2);
        assert_eq!(udp(addr, "api.example.com.", WireType::A).await.answers.len(), 1);
    }

    #[tokio::test]
    async fn embedded_answers_formerr_notimp_and_badvers() {
        let (_p, h) = example_server().await;
        let addr = h.local_addr();
        let none = Message::query();
        let m = udp_exchange(addr, &none.to_vec().unwrap()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let mut two = Message::query();
        two.add_query(Query::query(Name::from_ascii("api.example.com.").unwrap(), WireType::A));
        two.add_query(Query::query(Name::from_ascii("www.example.com.").unwrap(), WireType::A));
        let m = udp_exchange(addr, &two.to_vec().unwrap()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, two.metadata.id);

        let mut notify = Message::new(9, MessageType::Query, OpCode::Notify);
        notify.add_query(Query::query(Name::from_ascii("example.com.").unwrap(), WireType::SOA));
        let m = udp_exchange(addr, &notify.to_vec().unwrap()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

        let mut v1 = Message::query();
        v1.add_query(Query::query(Name::from_ascii("api.example.com.").unwrap(), WireType::A));
        let mut edns = Edns::new();
        edns.set_version(1);
        v1.set_edns(edns);
        let m = udp_exchange(addr, &v1.to_vec().unwrap()).await;
        // BADVERS shares code 16 with BADSIG, which is what decoding yields.
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert!(m.edns.is_some(), "the extended rcode needs an OPT record");
    }

    #[tokio::test]
    async fn embedded_serves_other_types_any_and_referrals() {
        let (_p, h) = example_server().await;
        let addr = h.local_addr();
        let m = udp(addr, "example.com.", WireType::MX).await;
        assert_eq!(m.answers[0].data.to_string(), "10 mail.example.com.");
        let m = udp(addr, "_sip._tcp.example.com.", WireType::SRV).await;
        assert_eq!(m.answers[0].data.to_string(), "10 20 5060 sip.example.com.");
        let m = udp(addr, "example.com.", WireType::CAA).await;
        let RData::CAA(caa) = &m.answers[0].data else { panic!("{m:?}") };
        assert_eq!((caa.tag.as_str(), caa.value.as_slice()), ("issue", &b"letsencrypt.org"[..]));

        let m = tcp(addr, "example.com.", WireType::ANY).await;
        let mut types: Vec<WireType> = m.answers.iter().map(|r| r.record_type()).collect();
        types.sort_by_key(|t| u16::from(*t));
        assert_eq!(types, vec![WireType::NS, WireType::SOA, WireType::MX, WireType::CAA]);

        // NS below the apex delegates: a referral, not an authoritative answer.
        let m = udp(addr, "host.child.example.com.", WireType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(!m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].name, Name::from_ascii("child.example.com.").unwrap());
        assert_eq!(ips_of(&m.additionals), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 54))]);
    }

    #[tokio::test]
    async fn embedded_apply_rejects_what_it_cannot_serve() {
        let p = EmbeddedProvider::new(&config(&["example.com"])).unwrap();
        let zone = Zone::named("example.com");
        let results = p
            .apply(
                &zone,
                &[
                    Change::Create(ep("ok.example.com", RecordType::A, &["192.0.2.1"])),
                    Change::Create(ep("example.com", RecordType::NS, &["ns.elsewhere.test"])),
                    Change::Create(ep("caa.example.com", RecordType::CAA, &["999 issue x"])),
                    Change::Create(ep("mx.example.com", RecordType::MX, &["mail.example.com"])),
                    Change::Create(ep("ok2.example.com", RecordType::TXT, &["hello"])),
                ],
            )
            .await;
        assert!(results[0].is_ok());
        assert!(results[1].as_ref().unwrap_err().to_string().contains("apex"), "{results:?}");
        assert!(results[2].is_err());
        assert!(results[3].is_err());
        assert!(results[4].is_ok());
        let names: Vec<String> = p.records(&zone).await.unwrap().into_iter().map(|e| e.dns_name).collect();
        assert_eq!(names, vec!["ok.example.com", "ok2.example.com"]);
        assert_eq!(p.zones().await.unwrap(), vec![zone]);
    }

    #[test]
    fn embedded_rdata_formats() {
        assert_eq!(rdata_for(RecordType::MX, "10 mail.example.com").unwrap().to_string(), "10 mail.example.com.");
        assert_eq!(
            rdata_for(RecordType::SRV, "0 5 443 svc.example.com").unwrap().to_string(),
            "0 5 443 svc.example.com."
        );
        assert!(rdata_for(RecordType::SRV, "0 5 99999 svc.example.com").is_err());
        let RData::CAA(caa) = rdata_for(RecordType::CAA, "128 issue \"ca.test; account=1\"").unwrap() else { panic!() };
        assert_eq!((caa.flags(), caa.tag.as_str(), caa.value.as_slice()), (128, "issue", &b"ca.test; account=1"[..]));
        let RData::CAA(caa) = rdata_for(RecordType::CAA, "0 iodef mailto:sec@example.com").unwrap() else { panic!() };
        assert_eq!(caa.value, b"mailto:sec@example.com");
        let RData::TXT(txt) = rdata_for(RecordType::TXT, "").unwrap() else { panic!() };
        assert_eq!(txt.txt_data.len(), 1, "an empty TXT still has one character-string");
        assert!(rdata_for(RecordType::A, "2001:db8::1").is_err());
        assert!(rdata_for(RecordType::CNAME, "bad name").is_err());
    }
}
