//! The source controller: one DNSEndpoint per Service or Ingress that yields records, owned by
//! it, written with server-side apply and deleted when the object stops yielding records.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

mod crd;

use super::leader::Leadership;
use super::route_index::RouteIndex;
use super::supervise::{GaveUp, Stopped, Supervisor};
use super::{Error, SOURCE_MANAGER};
use crate::crd::DNSEndpoint;
use crate::metrics::{Gate, KindLabels, Metrics};
use crate::source::annotations::{ALPHA_PREFIX, STABLE_PREFIX};
use crate::source::gateway::{self, Gateway, Route, RouteKind, GATEWAY_GROUP, GATEWAY_VERSIONS};
use crate::source::{
    self, DesiredObject, OwnerInfo, SourceConfig, SourceInputs, SourceKind, SourceObject, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
};

struct Ctx {
    client: Client,
    cfg: SourceConfig,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    /// DNSEndpoints this controller wrote, to skip writes that would change nothing.
    written: Store<DNSEndpoint>,
    /// Asked right before every write: a follower writes nothing.
    leadership: Leadership,
    /// Gateways and the version they are read in; `None` when no route source is enabled or
    /// the apiserver serves no Gateway API.
    gateways: Option<(Store<Gateway>, ApiResource)>,
    /// Namespace labels, for listeners that admit routes by namespace selector.
    namespaces: Store<Namespace>,
    /// Per route kind: which routes a Gateway or Namespace change concerns.
    route_indexes: HashMap<RouteKind, Mutex<RouteIndex>>,
    /// Pods whose hostname annotation reads their node's addresses, by node ("", node name).
    pods_by_node: Arc<Mutex<RouteIndex>>,
}

impl SourceInputs for Ctx {
    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.state()
    }

    fn endpoint_slices(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace)
                    && s.labels().get("kubernetes.io/service-name").map(String::as_str) == Some(service)
            })
            .collect()
    }

    fn pods(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods.state().into_iter().filter(|p| p.namespace().as_deref() == Some(namespace)).collect()
    }

    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    fn gateway(&self, namespace: &str, name: &str) -> Option<Arc<Gateway>> {
        let (store, ar) = self.gateways.as_ref()?;
        store.get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
    }

    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(&ObjectRef::new(name)).map(|ns| ns.labels().clone())
    }
}

/// Keeps of a Namespace its name and labels.
fn project_namespace(ns: &mut Namespace) {
    ns.metadata.annotations = None;
    ns.metadata.owner_references = None;
    ns.spec = None;
    ns.status = None;
}

/// Keeps of a Gateway's annotations only external-dns's (the target annotation is read);
/// its typed projection already drops every field but listeners and addresses.
fn project_gateway(gw: &mut Gateway) {
    if let Some(a) = gw.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(ALPHA_PREFIX) || k.starts_with(STABLE_PREFIX));
    }
    gw.metadata.owner_references = None;
}

/// The first of `versions` of gateway.networking.k8s.io in which the apiserver serves
/// `plural`, or `None` (CRD not installed, or only in versions extdns does not read).
async fn served_gateway_resource(client: &Client, plural: &str, versions: &[&str]) -> Option<ApiResource> {
    for v in versions {
        let Some(list) = discover(client, &format!("{GATEWAY_GROUP}/{v}")).await else {
            continue;
        };
        if let Some(r) = list.resources.iter().find(|r| r.name == plural) {
            return Some(ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GATEWAY_GROUP, v, &r.kind), plural));
        }
    }
    None
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reflector over `api` whose events (applied to `writer`'s store before they come out)
/// are handed to `on_event`, in order, on a supervised task of its own: a watch that panics
/// or ends starts again, lists again, and its store takes the new listing.
fn reflect_with<K>(
    tasks: &mut Supervisor,
    what: &str,
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    cfg: watcher::Config,
    project: fn(&mut K),
    on_event: impl FnMut(&watcher::Event<K>) + Send + 'static,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let task = format!("watch/{what}");
    // Outlive any one run of the watch.
    let writer = Arc::new(Mutex::new(writer));
    let on_event = Arc::new(Mutex::new(on_event));
    tasks.spawn(task.clone(), move || {
        let (writer, on_event, api, cfg, task) =
            (writer.clone(), on_event.clone(), api.clone(), cfg.clone(), task.clone());
        async move {
            // managedFields are never read here and are a large share of each object.
            let stream = watcher(api, cfg).default_backoff().modify(move |o: &mut K| {
                o.managed_fields_mut().clear();
                project(o);
            });
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => {
                        lock(&writer).apply_watcher_event(&ev);
                        (lock(&on_event))(&ev);
                    }
                    Err(e) => warn!(error = %e, "watch error; retrying with backoff"),
                }
            }
            Err(Stopped::Ended(format!("{task} ended")))
        }
    });
}

/// Where the pod source's controller takes re-render requests from Node changes.
struct PodTrigger {
    tx: futures::channel::mpsc::UnboundedSender<ObjectRef<Pod>>,
    pods: Store<Pod>,
}

impl PodTrigger {
    fn send(&self, index: &Mutex<RouteIndex>, keys: Vec<(String, String)>) {
        for key in keys {
            let r = ObjectRef::<Pod>::new(&key.1).within(&key.0);
            if self.pods.get(&r).is_none() {
                index.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                continue;
            }
            let _ = self.tx.unbounded_send(r);
        }
    }
}

/// Where a route controller takes re-render requests from Gateway and Namespace changes.
struct RouteTrigger {
    kind: RouteKind,
    ar: ApiResource,
    tx: futures::channel::mpsc::UnboundedSender<ObjectRef<Route>>,
    routes: Store<Route>,
}

impl RouteTrigger {
    /// Asks for the routes `keys` to be re-rendered; keys of routes that are gone are dropped
    /// from the index instead.
    fn send(&self, index: &Mutex<RouteIndex>, keys: Vec<(String, String)>) {
        for key in keys {
            let r = ObjectRef::new_with(&key.1, self.ar.clone()).within(&key.0);
            if self.routes.get(&r).is_none() {
                index.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                continue;
            }
            let _ = self.tx.unbounded_send(r);
        }
    }
}

/// Keeps of a Pod only what the Service and pod sources read (name, labels, external-dns
/// annotations, deletion timestamp, node name, hostname, hostNetwork, phase, Ready condition,
/// host IP, pod IPs).
/// Every Pod in the watched namespaces is cached; containers, volumes, container statuses
/// and `last-applied-configuration` are most of each object and never read.
fn project_pod(pod: &mut Pod) {
    let m = &mut pod.metadata;
    if let Some(a) = m.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(ALPHA_PREFIX) || k.starts_with(STABLE_PREFIX));
    }
    m.owner_references = None;
    m.finalizers = None;
    pod.spec = pod.spec.take().map(|s| PodSpec {
        node_name: s.node_name,
        hostname: s.hostname,
        host_network: s.host_network,
        ..Default::default()
    });
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        host_ip: s.host_ip,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition { type_: c.type_, status: c.status, ..Default::default() })
                .collect()
        }),
        ..Default::default()
    });
}

/// Keeps of a Node its name, addresses and `spec.unschedulable`, all the Service source
/// reads; the image list in a Node's status alone is often tens of KiB.
fn project_node(node: &mut Node) {
    node.metadata.annotations = None;
    node.spec = node.spec.take().map(|s| NodeSpec { unschedulable: s.unschedulable, ..Default::default() });
    node.status = node.status.take().map(|s| NodeStatus { addresses: s.addresses, ..Default::default() });
}

fn watch_store<K>(
    tasks: &mut Supervisor,
    what: &str,
    api: Api<K>,
    cfg: watcher::Config,
    project: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    reflect_with(tasks, what, writer, api, cfg, project, |_| {});
    store
}

/// The resources the apiserver serves in `group_version`, or `None` when it serves no such
/// group version. An apiserver that cannot be asked yet (starting, unreachable) is asked
/// again with backoff: deciding on a failed request would turn a source off for the life of
/// the process.
async fn discover(
    client: &Client,
    group_version: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList> {
    let mut attempt = 0;
    loop {
        match client.list_api_group_resources(group_version).await {
            Ok(list) => return Some(list),
            Err(kube::Error::Api(e)) if e.code == 404 => return None,
            Err(e) => {
                let delay = extdns_core::backoff::delay(Duration::from_millis(500), Duration::from_secs(30), attempt);
                warn!(group_version, error = %e, retry_in = ?delay, "cannot ask the apiserver which resources it serves; asking again");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// True when the apiserver serves discovery.k8s.io/v1 (Kubernetes 1.21+).
async fn serves_endpointslices(client: &Client) -> bool {
    discover(client, "discovery.k8s.io/v1")
        .await
        .is_some_and(|list| list.resources.iter().any(|r| r.name == "endpointslices"))
}

/// Yields once each time this replica starts leading: what it skipped as a follower is
/// reconciled then.
fn leadership_gained(leadership: &Leadership) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(leadership.subscribe(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

/// Runs the source controller. Every replica runs it and keeps its caches; only while
/// `leadership.is_leader()` does it write DNSEndpoints and Events. Its watches are
/// supervised; it returns when one cannot be restarted or a controller stops (the process
/// then exits so that Kubernetes restarts it). `ready` opens once every cache is listed.
pub async fn run(
    client: Client,
    cfg: SourceConfig,
    metrics: Arc<Metrics>,
    leadership: Leadership,
    ready: Gate,
) -> Result<(), GaveUp> {
    let mut watches = Supervisor::new(metrics.clone());
    // Node changes re-render Services (NodePort records), from the one trimmed Node cache.
    let (node_changed, node_changes) = futures::channel::mpsc::unbounded::<()>();
    let node_changed = cfg.enabled(SourceKind::Service).then_some(node_changed);
    let args = cfg.args.clone();
    let ns = args.namespace.clone();
    let pods_by_node: Arc<Mutex<RouteIndex>> = Arc::default();
    // Filled once the pod source's controller exists: a Node whose addresses change re-renders
    // the pods whose hostname annotation publishes them.
    let pod_trigger: Arc<std::sync::OnceLock<PodTrigger>> = Arc::default();
    let node_writer = reflector::store::Writer::<Node>::default();
    let nodes = node_writer.as_reader();
    {
        let (index, trigger) = (pods_by_node.clone(), pod_trigger.clone());
        reflect_with(
            &mut watches,
            "Node",
            node_writer,
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            project_node,
            move |ev| {
                let node = match ev {
                    watcher::Event::Apply(n) | watcher::Event::Delete(n) | watcher::Event::InitApply(n) => n,
                    watcher::Event::Init => return,
                    watcher::Event::InitDone => {
                        // A new listing may hold changes the watch missed.
                        if let Some(tx) = &node_changed {
                            if tx.unbounded_send(()).is_err() {
                                debug!("the Service controller is gone; a Node listing re-renders nothing");
                            }
                        }
                        return;
                    }
                };
                if let (Some(tx), false) = (&node_changed, matches!(ev, watcher::Event::InitApply(_))) {
                    if tx.unbounded_send(()).is_err() {
                        debug!("the Service controller is gone; a Node change re-renders nothing");
                    }
                }
                if let Some(t) = trigger.get() {
                    let keys = index
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .routes_of_gateway(&(String::new(), node.name_any()));
                    t.send(&index, keys);
                }
            },
        );
    }
    let (slices, slices_served) = if serves_endpointslices(&client).await {
        (
            watch_store(
                &mut watches,
                "EndpointSlice",
                scoped::<EndpointSlice>(&client, &ns),
                watcher::Config::default(),
                |_| {},
            ),
            true,
        )
    } else {
        warn!("the apiserver does not serve discovery.k8s.io/v1 EndpointSlices (Kubernetes < 1.21): headless Services yield no records");
        (reflector::store::<EndpointSlice>().0, false)
    };
    let pods = watch_store(&mut watches, "Pod", scoped::<Pod>(&client, &ns), watcher::Config::default(), project_pod);
    // Anyone who may create DNSEndpoints may set this label, and one may be over a megabyte:
    // listed a page at a time (here and in each controller's `owns` watch), cached as digests.
    let managed_cfg = watcher::Config::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
        .page_size(DNSENDPOINT_PAGE_SIZE);
    let written = watch_store(
        &mut watches,
        "DNSEndpoint",
        scoped::<DNSEndpoint>(&client, &ns),
        managed_cfg.clone(),
        project_written,
    );
    let recorder = Recorder::new(client.clone(), Reporter { controller: SOURCE_MANAGER.into(), instance: None });
    let route_kinds: Vec<RouteKind> =
        RouteKind::ALL.into_iter().filter(|k| cfg.enabled(SourceKind::for_route(*k))).collect();
    let gateway_ar = if route_kinds.is_empty() {
        None
    } else {
        let ar = served_gateway_resource(&client, "gateways", &GATEWAY_VERSIONS).await;
        if ar.is_none() {
            warn!("the apiserver serves no Gateway API Gateways (gateway.networking.k8s.io v1 or v1beta1): the gateway-* sources publish nothing");
        }
        ar
    };
    // Filled below, each before its route controller starts: a Gateway or Namespace event
    // that comes after a route was rendered then always finds the route's trigger.
    let triggers: Arc<Mutex<Vec<RouteTrigger>>> = Arc::default();
    let gateways = gateway_ar.clone().map(|ar| {
        let writer = reflector::store::Writer::<Gateway>::new(ar.clone());
        let store = writer.as_reader();
        let mut gw_cfg = watcher::Config::default();
        if !args.gateway_label_filter.trim().is_empty() {
            gw_cfg = gw_cfg.labels(args.gateway_label_filter.trim());
        }
        let api = if args.gateway_namespace.is_empty() {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), &args.gateway_namespace, &ar)
        };
        (writer, store, api, gw_cfg, ar)
    });
    let ns_writer = reflector::store::Writer::<Namespace>::default();
    let namespaces = ns_writer.as_reader();
    let route_indexes: HashMap<RouteKind, Mutex<RouteIndex>> =
        route_kinds.iter().map(|k| (*k, Mutex::default())).collect();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cfg,
        metrics,
        recorder,
        nodes,
        slices,
        pods,
        written,
        leadership: leadership.clone(),
        gateways: gateways.as_ref().map(|(_, store, _, _, ar)| (store.clone(), ar.clone())),
        namespaces,
        route_indexes,
        pods_by_node,
    });
    if let Some((writer, _, api, gw_cfg, _)) = gateways {
        let (gw_ctx, gw_triggers) = (ctx.clone(), triggers.clone());
        reflect_with(&mut watches, "Gateway", writer, api, gw_cfg, project_gateway, move |ev| {
            let gw = match ev {
                watcher::Event::Apply(g) | watcher::Event::Delete(g) | watcher::Event::InitApply(g) => g,
                watcher::Event::Init | watcher::Event::InitDone => return,
            };
            let key = (gw.namespace().unwrap_or_default(), gw.name_any());
            for t in gw_triggers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let index = &gw_ctx.route_indexes[&t.kind];
                let keys = index.lock().unwrap_or_else(|e| e.into_inner()).routes_of_gateway(&key);
                t.send(index, keys);
            }
        });
        let (ns_ctx, ns_triggers) = (ctx.clone(), triggers.clone());
        let mut last_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let ns_api = Api::all(client.clone());
        reflect_with(
            &mut watches,
            "Namespace",
            ns_writer,
            ns_api,
            watcher::Config::default(),
            project_namespace,
            move |ev| {
                let ns = match ev {
                    watcher::Event::Apply(n) | watcher::Event::InitApply(n) => n,
                    watcher::Event::Delete(n) => {
                        last_labels.remove(&n.name_any());
                        return;
                    }
                    watcher::Event::Init | watcher::Event::InitDone => return,
                };
                // Only label changes matter: they decide what a listener's namespace selector admits.
                if last_labels.get(&ns.name_any()) == Some(ns.labels()) {
                    return;
                }
                last_labels.insert(ns.name_any(), ns.labels().clone());
                for t in ns_triggers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let index = &ns_ctx.route_indexes[&t.kind];
                    let keys = index.lock().unwrap_or_else(|e| e.into_inner()).routes_in_namespace(&ns.name_any());
                    t.send(index, keys);
                }
            },
        );
    }

    tokio::select! {
        _ = wait_for_caches(&ctx) => {}
        gave_up = watches.gave_up() => return Err(gave_up),
    }

    let mut source_cfg = watcher::Config::default();
    if !args.label_filter.trim().is_empty() {
        source_cfg = source_cfg.labels(args.label_filter.trim());
    }
    let mut tasks = tokio::task::JoinSet::new();
    // The controllers' own caches, listed before readiness.
    let mut caches: Vec<(&str, futures::future::BoxFuture<'static, ()>)> = Vec::new();
    if ctx.cfg.enabled(SourceKind::Service) {
        let mut c = Controller::new(scoped::<Service>(&client, &ns), source_cfg.clone())
            .owns(scoped::<DNSEndpoint>(&client, &ns), managed_cfg.clone());
        if slices_served {
            c = c.watches(scoped::<EndpointSlice>(&client, &ns), watcher::Config::default(), |s: EndpointSlice| {
                let svc = s.labels().get("kubernetes.io/service-name").cloned()?;
                Some(ObjectRef::<Service>::new(&svc).within(&s.namespace()?))
            });
        }
        // Node addresses feed NodePort records: a node change re-evaluates every Service.
        c = c.reconcile_all_on(node_changes).reconcile_all_on(leadership_gained(&leadership));
        caches.push(("Services", ready_future(&c.store())));
        let ctx = ctx.clone();
        tasks.spawn(async move {
            c.run(reconcile_service, error_policy, ctx).for_each(log_queue_error).await;
        });
    }
    if ctx.cfg.enabled(SourceKind::Ingress) {
        let c = Controller::new(scoped::<Ingress>(&client, &ns), source_cfg.clone())
            .owns(scoped::<DNSEndpoint>(&client, &ns), managed_cfg.clone())
            .reconcile_all_on(leadership_gained(&leadership));
        caches.push(("Ingresses", ready_future(&c.store())));
        let ctx = ctx.clone();
        tasks.spawn(async move {
            c.run(reconcile_ingress, error_policy, ctx).for_each(log_queue_error).await;
        });
    }
    if let Some((_, gw_ar)) = ctx.gateways.clone() {
        for kind in route_kinds {
            let Some(ar) = served_gateway_resource(&client, kind.plural(), kind.versions()).await else {
                warn!(kind = kind.kind(), "the apiserver does not serve this route kind in any version extdns reads ({}): its source publishes nothing", kind.versions().join(", "));
                continue;
            };
            info!(kind = kind.kind(), api_version = %ar.api_version, gateway_api_version = %gw_ar.api_version, "reading Gateway API routes");
            let api = if ns.is_empty() {
                Api::<Route>::all_with(client.clone(), &ar)
            } else {
                Api::<Route>::namespaced_with(client.clone(), &ns, &ar)
            };
            let (tx, rx) = futures::channel::mpsc::unbounded();
            let c = Controller::new_with(api, source_cfg.clone(), ar.clone())
                .owns(scoped::<DNSEndpoint>(&client, &ns), managed_cfg.clone())
                .reconcile_on(rx)
                .reconcile_all_on(leadership_gained(&leadership));
            caches.push((kind.kind(), ready_future(&c.store())));
            triggers.lock().unwrap_or_else(|e| e.into_inner()).push(RouteTrigger {
                kind,
                ar: ar.clone(),
                tx,
                routes: c.store(),
            });
            let ctx = ctx.clone();
            tasks.spawn(async move {
                c.run(move |r, ctx| reconcile_route(r, ctx, kind, ar.clone()), error_policy, ctx)
                    .for_each(log_queue_error)
                    .await;
            });
        }
    }
    if ctx.cfg.enabled(SourceKind::Node) {
        // Nodes are few, and the node source reads their annotations, spec and addresses: the
        // controller keeps whole Nodes (less managedFields). Their DNSEndpoints live in the
        // operator's namespace, owned by the Node (a namespaced dependent may have a
        // cluster-scoped owner): owner GC removes them with the Node.
        let node_ns = ctx.cfg.node_namespace.clone();
        let c = Controller::new(Api::<Node>::all(client.clone()), source_cfg.clone())
            .watches(
                Api::<DNSEndpoint>::namespaced(client.clone(), &node_ns),
                managed_cfg.clone(),
                |ep: DNSEndpoint| {
                    let owner =
                        ep.owner_references().iter().find(|o| o.kind == "Node" && o.api_version == "v1")?.clone();
                    Some(ObjectRef::<Node>::new(&owner.name))
                },
            )
            .reconcile_all_on(leadership_gained(&leadership));
        caches.push(("Nodes (node source)", ready_future(&c.store())));
        let ctx = ctx.clone();
        tasks.spawn(async move {
            c.run(reconcile_node, error_policy, ctx).for_each(log_queue_error).await;
        });
    }
    if ctx.cfg.enabled(SourceKind::Pod) {
        // On the projected Pod stream (filtered by --label-filter), not whole Pods.
        let (store, writer) = reflector::store::<Pod>();
        let stream = reflector::reflector(
            writer,
            watcher(scoped::<Pod>(&client, &ns), source_cfg.clone()).default_backoff().modify(|p: &mut Pod| {
                p.managed_fields_mut().clear();
                project_pod(p);
            }),
        )
        .applied_objects();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let _ = pod_trigger.set(PodTrigger { tx, pods: store.clone() });
        caches.push(("Pods (pod source)", ready_future(&store)));
        let c = Controller::for_stream(stream, store)
            .owns(scoped::<DNSEndpoint>(&client, &ns), managed_cfg.clone())
            .reconcile_on(rx)
            .reconcile_all_on(leadership_gained(&leadership));
        let ctx = ctx.clone();
        tasks.spawn(async move {
            c.run(reconcile_pod, error_policy, ctx).for_each(log_queue_error).await;
        });
    }
    if let Some(listed) = crd::start(&mut tasks, &client, &ns, &source_cfg, &managed_cfg, &leadership, &ctx).await {
        caches.push(("crd source objects", listed));
    }
    info!("source controller started");
    let caches_listed = async {
        for (what, wait) in caches {
            let mut wait = std::pin::pin!(wait);
            loop {
                match tokio::time::timeout(Duration::from_secs(30), &mut wait).await {
                    Ok(()) => break,
                    Err(_) => warn!(cache = what, "the source controller waits for its cache of {what} to be listed"),
                }
            }
            debug!(cache = what, "listed");
        }
        ready.open();
        std::future::pending::<()>().await
    };
    // The controllers' streams never end on their own: one that does (or panics) leaves its
    // objects unrendered, so the process exits and starts afresh.
    let ended = async {
        let done = tasks.join_next().await;
        let last = match done {
            Some(Err(e)) => super::supervise::stopped::<()>(Err(e)).err().unwrap_or(Stopped::Ended("unknown".into())),
            _ => Stopped::Ended("its stream ended".into()),
        };
        super::supervise::count_restart(&ctx.metrics, "source-controller");
        GaveUp { task: "a source controller".into(), failures: 1, last }
    };
    tokio::select! {
        _ = caches_listed => Ok(()),
        gave_up = ended => Err(gave_up),
        gave_up = watches.gave_up() => Err(gave_up),
    }
}

/// A controller's watch errors would otherwise vanish in its output stream (reconcile
/// errors go through `error_policy`).
async fn log_queue_error<T, R: std::error::Error, Q: std::error::Error>(
    r: Result<T, kube::runtime::controller::Error<R, Q>>,
) {
    if let Err(kube::runtime::controller::Error::QueueError(e)) = r {
        warn!(error = %e, "a source controller's watch failed; retrying with backoff");
    }
}

/// Resolves once `store` holds its first listing (never, if its writer is gone).
fn ready_future<K>(store: &Store<K>) -> futures::future::BoxFuture<'static, ()>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let store = store.clone();
    Box::pin(async move {
        if store.wait_until_ready().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

/// Waits until every cache the sources read holds its first listing. A source object
/// rendered before would miss its Gateway, namespace labels, node addresses or endpoints and
/// yield no records: its DNSEndpoint would be deleted, and its records with it, on every
/// start of the operator.
async fn wait_for_caches(ctx: &Ctx) {
    use futures::future::BoxFuture;
    fn ready<K>(store: &Store<K>) -> BoxFuture<'static, ()>
    where
        K: Resource + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let store = store.clone();
        Box::pin(async move {
            // A dropped writer is a watch task that ended: nothing to wait for.
            let _ = store.wait_until_ready().await;
        })
    }
    let mut waits: Vec<(&str, BoxFuture<'static, ()>)> = vec![
        ("Nodes", ready(&ctx.nodes)),
        ("EndpointSlices", ready(&ctx.slices)),
        ("Pods", ready(&ctx.pods)),
        ("DNSEndpoints", ready(&ctx.written)),
    ];
    if let Some((gateways, _)) = &ctx.gateways {
        waits.push(("Gateways", ready(gateways)));
        waits.push(("Namespaces", ready(&ctx.namespaces)));
    }
    for (what, wait) in waits {
        let mut wait = std::pin::pin!(wait);
        loop {
            match tokio::time::timeout(Duration::from_secs(30), &mut wait).await {
                Ok(()) => break,
                // Usually RBAC: the watch's own warnings say why.
                Err(_) => warn!(cache = what, "the source controller waits for its cache of {what} to be listed"),
            }
        }
    }
}

fn scoped<K>(client: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if ns.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    }
}

async fn reconcile_service(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    reconcile(SourceObject::Service(&svc), svc.as_ref(), &(), SourceKind::Service, &ctx).await
}

async fn reconcile_ingress(ing: Arc<Ingress>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    reconcile(SourceObject::Ingress(&ing), ing.as_ref(), &(), SourceKind::Ingress, &ctx).await
}

async fn reconcile_node(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    reconcile(SourceObject::Node(&node), node.as_ref(), &(), SourceKind::Node, &ctx).await
}

async fn reconcile_pod(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // Indexed before the node is read (see reconcile_route): only pods whose hostname
    // annotation publishes their node's addresses depend on it.
    let key = (pod.namespace().unwrap_or_default(), pod.name_any());
    let reads_node = pod.annotations().keys().any(|k| {
        k.strip_prefix(ALPHA_PREFIX).or_else(|| k.strip_prefix(STABLE_PREFIX))
            == Some(crate::source::annotations::HOSTNAME)
    });
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| reads_node && !n.is_empty());
    ctx.pods_by_node
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set(&key, node.map(|n| (String::new(), n)).into_iter().collect());
    reconcile(SourceObject::Pod(&pod), pod.as_ref(), &(), SourceKind::Pod, &ctx).await
}

async fn reconcile_route(route: Arc<Route>, ctx: Arc<Ctx>, kind: RouteKind, ar: ApiResource) -> Result<Action, Error> {
    // Indexed before any Gateway is read: a Gateway change this pass does not see yet will
    // find the route here and render it again.
    let key = (route.namespace().unwrap_or_default(), route.name_any());
    if let Some(index) = ctx.route_indexes.get(&kind) {
        index.lock().unwrap_or_else(|e| e.into_inner()).set(&key, gateway::referenced_gateways(&route));
    }
    // The status update that ends the wait triggers this again.
    if gateway::awaiting_acceptance(&route) {
        debug!(route = %format!("{}/{}", key.0, key.1), kind = kind.kind(), "a Gateway has not reported on the route's current generation yet: its DNSEndpoint is left as it is");
        return Ok(Action::await_change());
    }
    reconcile(SourceObject::Route(kind, &route), route.as_ref(), &ar, SourceKind::for_route(kind), &ctx).await
}

fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(error = %err, "source reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile<K>(
    obj: SourceObject<'_>,
    k: &K,
    dt: &K::DynamicType,
    source_kind: SourceKind,
    ctx: &Ctx,
) -> Result<Action, Error>
where
    K: Resource,
{
    reconcile_outcome(obj, k, dt, source_kind, ctx).await.map(|(action, _)| action)
}

/// [`reconcile`], and whether the object's DNSEndpoint now is what the object renders to
/// (written, unchanged, or deleted because it yields no records): false when rendering failed,
/// the name is taken, the old one is still going, or a follower skipped the write.
async fn reconcile_outcome<K>(
    obj: SourceObject<'_>,
    k: &K,
    dt: &K::DynamicType,
    source_kind: SourceKind,
    ctx: &Ctx,
) -> Result<(Action, bool), Error>
where
    K: Resource,
{
    // Nodes are cluster-scoped: their DNSEndpoints live in the operator's namespace.
    let ns = if source_kind == SourceKind::Node {
        ctx.cfg.node_namespace.clone()
    } else {
        k.namespace().unwrap_or_default()
    };
    let name = k.name_any();
    let dyn_kind = K::kind(dt);
    let kind = match source_kind {
        SourceKind::Service => "Service",
        SourceKind::Ingress => "Ingress",
        SourceKind::Node => "Node",
        SourceKind::Pod => "Pod",
        SourceKind::Crd => &dyn_kind,
        other => other.route_kind().map(RouteKind::kind).unwrap_or("Route"),
    };
    let ep_name = source::dnsendpoint_name(&name, source_kind);
    let api: Api<DNSEndpoint> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = ctx.written.get(&ObjectRef::new(&ep_name).within(&ns));
    let uid = k.meta().uid.clone().unwrap_or_default();
    let desired = if k.meta().deletion_timestamp.is_some() {
        None
    } else {
        match source::desired_dnsendpoint(obj, ctx, &ctx.cfg) {
            Ok(d) => d,
            // Permanent until the object (or a Node it reads) changes: retrying changes
            // nothing. Its DNSEndpoint is left as it is, as external-dns, whose whole pass
            // fails here, leaves its records; the user learns why from the Event.
            Err(e) => {
                warn!(source = %obj.describe(), error = %e, "computing the DNSEndpoint failed: left as it is");
                if ctx.leadership.is_leader() {
                    publish(ctx, k, dt, EventType::Warning, e.reason(), e.to_string()).await;
                }
                return Ok((Action::await_change(), false));
            }
        }
    };
    match desired {
        // Writing to a DNSEndpoint that is going away would be lost with it. Its deletion
        // event may reach this controller before the cache of written objects drops it, so
        // look again rather than wait for an event.
        Some(_) if existing.as_ref().is_some_and(|e| e.meta().deletion_timestamp.is_some()) => {
            debug!(dnsendpoint = %format!("{ns}/{ep_name}"), "DNSEndpoint is being deleted: written again once it is gone");
            return Ok((Action::requeue(TERMINATING_RECHECK), false));
        }
        Some(d) => {
            let owner = OwnerInfo {
                api_version: K::api_version(dt).into_owned(),
                kind: kind.to_string(),
                name: name.clone(),
                uid,
            };
            let want = source::dnsendpoint_object(&d, &owner);
            let unchanged = existing.as_ref().is_some_and(|e| {
                e.annotations().get(CACHED_SPEC_DIGEST) == Some(&want.spec.digest().to_string())
                    && e.metadata.owner_references == want.metadata.owner_references
                    && e.labels() == want.labels()
            });
            if !unchanged {
                if !ctx.leadership.is_leader() {
                    debug!(dnsendpoint = %format!("{ns}/{ep_name}"), "not the leader: DNSEndpoint not written");
                    return Ok((Action::await_change(), false));
                }
                // Not in the cache of our objects: a DNSEndpoint of that name may still exist,
                // written by someone else. Never take it over (the forced apply would, and it
                // would then be garbage-collected with this object).
                if existing.is_none() {
                    let found = api
                        .get_opt(&ep_name)
                        .await
                        .map_err(|source| Error::ReadEndpoint { name: format!("{ns}/{ep_name}"), source })?;
                    if let Some(other) = found.filter(|f| !written_by_source_controller(f)) {
                        warn!(dnsendpoint = %format!("{ns}/{ep_name}"), source = %format!("{kind}/{name}"), "DNSEndpoint exists and is not ours: left alone");
                        publish(ctx, k, dt, EventType::Warning, REASON_NAME_TAKEN, name_taken_message(&other, kind))
                            .await;
                        // Deleting or renaming it sends no event we watch: look again later.
                        return Ok((Action::requeue(NAME_TAKEN_RECHECK), false));
                    }
                }
                // Warnings go out with the write that they concern, not on every resync.
                publish_warnings(ctx, k, dt, &d).await;
                // Publishing may have taken a while: ask again right before the write.
                if !ctx.leadership.is_leader() {
                    return Ok((Action::await_change(), false));
                }
                api.patch(&ep_name, &PatchParams::apply(SOURCE_MANAGER).force(), &Patch::Apply(&want))
                    .await
                    .map_err(|source| Error::ApplyEndpoint { name: format!("{ns}/{ep_name}"), source })?;
                ctx.metrics.source_writes.get_or_create(&KindLabels { kind: "apply".into() }).inc();
                info!(dnsendpoint = %format!("{ns}/{ep_name}"), source = %format!("{kind}/{name}"), "DNSEndpoint written");
            }
        }
        None => {
            // Only delete what this object owns; a hand-written DNSEndpoint of that name stays.
            let owned = existing.as_ref().is_some_and(|e| e.owner_references().iter().any(|o| o.uid == uid));
            if owned {
                if !ctx.leadership.is_leader() {
                    debug!(dnsendpoint = %format!("{ns}/{ep_name}"), "not the leader: DNSEndpoint not deleted");
                    return Ok((Action::await_change(), false));
                }
                match api.delete(&ep_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        ctx.metrics.source_writes.get_or_create(&KindLabels { kind: "delete".into() }).inc();
                        info!(dnsendpoint = %format!("{ns}/{ep_name}"), "DNSEndpoint deleted: its source yields no records");
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => return Err(Error::DeleteEndpoint { name: format!("{ns}/{ep_name}"), source }),
                }
            }
        }
    }
    Ok((Action::await_change(), true))
}

/// Event reason on a Service or Ingress whose DNSEndpoint name is taken by an object the
/// source controller did not write.
pub const REASON_NAME_TAKEN: &str = "DNSEndpointNameTaken";
/// How often a source object whose DNSEndpoint name is taken looks again.
const NAME_TAKEN_RECHECK: Duration = Duration::from_secs(300);
/// How often a source object looks again while its DNSEndpoint finishes being deleted (the
/// provider controller removes its records first).
const TERMINATING_RECHECK: Duration = Duration::from_secs(2);

/// True for DNSEndpoints the source controller wrote: they carry its managed-by label.
/// DNSEndpoints per page of a listing (they may be over a megabyte each).
const DNSENDPOINT_PAGE_SIZE: u32 = 16;

/// Annotation set on the cached copies of DNSEndpoints only (never written): the digest of
/// the spec the cache does not hold.
const CACHED_SPEC_DIGEST: &str = "extdns.io/cached-spec-digest";

/// What the cache of labelled DNSEndpoints keeps: metadata and a digest of the spec, which is
/// all this controller compares; the records and status are dropped.
fn project_written(ep: &mut DNSEndpoint) {
    let digest = ep.spec.digest();
    ep.spec.endpoints = Vec::new();
    ep.status = None;
    ep.annotations_mut().insert(CACHED_SPEC_DIGEST.into(), digest.to_string());
}

fn written_by_source_controller(ep: &DNSEndpoint) -> bool {
    ep.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

fn name_taken_message(other: &DNSEndpoint, kind: &str) -> String {
    format!(
        "DNSEndpoint {}/{} already exists and was not written by extdns's source controller (no {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} label); it is left untouched and this {kind}'s records are not published until it is renamed or deleted",
        other.namespace().unwrap_or_default(),
        other.name_any()
    )
}

async fn publish<K: Resource>(ctx: &Ctx, k: &K, dt: &K::DynamicType, type_: EventType, reason: &str, note: String) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &k.object_ref(dt)).await {
        warn!(error = %e, "publishing an Event failed");
    }
}

async fn publish_warnings<K: Resource>(ctx: &Ctx, k: &K, dt: &K::DynamicType, d: &DesiredObject) {
    for w in &d.warnings {
        publish(ctx, k, dt, EventType::Warning, source::warning_reason(w), w.clone()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).expect("test yaml")
    }

    #[test]
    fn cached_dnsendpoints_keep_a_digest_of_their_spec_instead_of_the_records() {
        let ep = |target: &str| -> DNSEndpoint {
            yaml(&format!(
                r#"
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {{name: web-service, namespace: shop, labels: {{app.kubernetes.io/managed-by: extdns}}}}
spec:
  endpoints: [{{dnsName: web.example.com, recordType: A, targets: ["{target}"]}}]
status: {{hostnames: web.example.com}}
"#
            ))
        };
        let want = ep("192.0.2.1");
        let mut cached = want.clone();
        project_written(&mut cached);
        assert!(cached.spec.endpoints.is_empty() && cached.status.is_none());
        assert_eq!(cached.labels(), want.labels());
        let digest = cached.annotations().get(CACHED_SPEC_DIGEST).cloned();
        assert_eq!(digest, Some(want.spec.digest().to_string()));
        assert_ne!(digest, Some(ep("192.0.2.2").spec.digest().to_string()));
    }

    #[test]
    fn pod_projection_keeps_what_the_service_source_reads_and_drops_the_rest() {
        let mut pod: Pod = yaml(
            r#"
metadata:
  name: web-0
  namespace: shop
  labels: {app: web}
  annotations:
    external-dns.alpha.kubernetes.io/target: 192.0.2.1
    external-dns.kubernetes.io/ttl: "60"
    kubectl.kubernetes.io/last-applied-configuration: '{"huge": "blob"}'
  deletionTimestamp: "2024-01-01T00:00:00Z"
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: web, uid: u1}]
spec:
  nodeName: node-a
  hostname: web-0
  containers: [{name: app, image: "nginx", env: [{name: A, value: b}]}]
  volumes: [{name: data, emptyDir: {}}]
status:
  phase: Running
  hostIP: 10.1.0.1
  podIP: 10.2.0.1
  podIPs: [{ip: 10.2.0.1}]
  conditions:
  - {type: Ready, status: "True", message: m, lastTransitionTime: "2024-01-01T00:00:00Z"}
  - {type: PodScheduled, status: "True"}
  containerStatuses: [{name: app, image: nginx, imageID: x, ready: true, restartCount: 0}]
"#,
        );
        project_pod(&mut pod);
        let want: Pod = yaml(
            r#"
metadata:
  name: web-0
  namespace: shop
  labels: {app: web}
  annotations:
    external-dns.alpha.kubernetes.io/target: 192.0.2.1
    external-dns.kubernetes.io/ttl: "60"
  deletionTimestamp: "2024-01-01T00:00:00Z"
spec:
  nodeName: node-a
  hostname: web-0
  containers: []
status:
  phase: Running
  hostIP: 10.1.0.1
  podIP: 10.2.0.1
  podIPs: [{ip: 10.2.0.1}]
  conditions: [{type: Ready, status: "True"}]
"#,
        );
        assert_eq!(pod, want);
    }

    #[test]
    fn only_labelled_dnsendpoints_are_ours() {
        let mut ep: DNSEndpoint = yaml("metadata: {name: web-service, namespace: shop}\nspec: {endpoints: []}");
        assert!(!written_by_source_controller(&ep));
        assert_eq!(
            name_taken_message(&ep, "Service"),
            "DNSEndpoint shop/web-service already exists and was not written by extdns's source controller (no app.kubernetes.io/managed-by=extdns label); it is left untouched and this Service's records are not published until it is renamed or deleted"
        );
        ep.metadata.labels = Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into());
        assert!(written_by_source_controller(&ep));
    }

    #[test]
    fn node_projection_keeps_name_and_addresses() {
        let mut node: Node = yaml(
            r#"
metadata: {name: node-a, labels: {zone: a}, annotations: {big: blob}}
spec: {podCIDR: 10.0.0.0/24, unschedulable: true}
status:
  addresses: [{type: ExternalIP, address: 192.0.2.9}, {type: InternalIP, address: 10.0.0.9}]
  images: [{names: ["nginx@sha256:0"], sizeBytes: 1}]
  capacity: {cpu: "2"}
"#,
        );
        project_node(&mut node);
        let want: Node = yaml(
            r#"
metadata: {name: node-a, labels: {zone: a}}
spec: {unschedulable: true}
status:
  addresses: [{type: ExternalIP, address: 192.0.2.9}, {type: InternalIP, address: 10.0.0.9}]
"#,
        );
        assert_eq!(node, want);
    }
}
