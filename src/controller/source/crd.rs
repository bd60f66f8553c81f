//! The crd source's part of the source controller: it finds the kind
//! `--crd-source-apiversion`/`--crd-source-kind` name, renders its objects like any other
//! source, and writes `status.observedGeneration` back as external-dns does, so tools that
//! read it (Argo CD's health check for external-dns's DNSEndpoint) see them processed.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::{discover, error_policy, leadership_gained, log_queue_error, ready_future, reconcile_outcome, scoped, Ctx};
use crate::controller::leader::Leadership;
use crate::controller::{Error, SOURCE_MANAGER};
use crate::crd::DNSEndpoint;
use crate::source::crd::{generation_to_record, CrdResource};
use crate::source::{self, SourceKind, SourceObject};

/// How often the crd source asks again for a kind the apiserver does not serve yet.
const DISCOVERY_RECHECK: Duration = Duration::from_secs(30);

/// The resource of `r`'s kind, or `None` when the apiserver does not serve it (CRD not
/// installed, or not in that version).
async fn served(client: &Client, r: &CrdResource) -> Option<ApiResource> {
    let list = discover(client, &r.api_version()).await?;
    // Subresources ("dnsendpoints/status") name the same kind.
    let found = list.resources.iter().find(|a| a.kind == r.kind && !a.name.contains('/'))?;
    if !found.namespaced {
        warn!(kind = %r.kind, api_version = %r.api_version(), "the crd source's kind is cluster-scoped; it reads only namespaced kinds such as external-dns's DNSEndpoint");
        return None;
    }
    Some(ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&r.group, &r.version, &r.kind), &found.name))
}

/// Asks every [`DISCOVERY_RECHECK`] until the apiserver serves `r`'s kind (its CRD was
/// installed after the operator started), then returns its resource.
async fn wait_until_served(client: &Client, r: &CrdResource) -> ApiResource {
    loop {
        tokio::time::sleep(DISCOVERY_RECHECK).await;
        if let Some(ar) = served(client, r).await {
            info!(kind = %r.kind, api_version = %r.api_version(), "the crd source's kind is served now: reading its objects");
            return ar;
        }
        debug!(kind = %r.kind, api_version = %r.api_version(), "the crd source's kind is still not served");
    }
}

/// Starts the crd source on `tasks` when it is on: at once if its kind is served, else once
/// it is. Returns what readiness waits for: the first listing, only when the kind is served
/// at start-up (an operator that also serves other sources must not wait for a CRD).
pub(super) async fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    client: &Client,
    ns: &str,
    source_cfg: &watcher::Config,
    managed_cfg: &watcher::Config,
    leadership: &Leadership,
    ctx: &Arc<Ctx>,
) -> Option<BoxFuture<'static, ()>> {
    let resource = ctx.cfg.crd_resource.clone().filter(|_| ctx.cfg.enabled(SourceKind::Crd))?;
    let served = served(client, &resource).await;
    if served.is_none() {
        warn!(kind = %resource.kind, api_version = %resource.api_version(), "the crd source's kind is not served (is its CRD installed?): it publishes nothing until it is; asking again every 30s");
    }
    let c = served.as_ref().map(|ar| controller(client, ns, ar, source_cfg.clone(), managed_cfg.clone(), leadership));
    let listed = c.as_ref().map(|c| ready_future(&c.store()));
    let (client, ns, source_cfg, managed_cfg) =
        (client.clone(), ns.to_string(), source_cfg.clone(), managed_cfg.clone());
    let (leadership, ctx) = (leadership.clone(), ctx.clone());
    tasks.spawn(async move {
        let (c, ar) = match (c, served) {
            (Some(c), Some(ar)) => (c, ar),
            _ => {
                let ar = wait_until_served(&client, &resource).await;
                (controller(&client, &ns, &ar, source_cfg, managed_cfg, &leadership), ar)
            }
        };
        ctx.metrics.crd_source_served.set(1);
        run(c, ar, ctx).await;
    });
    listed
}

/// The controller of the crd source's objects, each owning the extdns.io DNSEndpoint it
/// renders to.
fn controller(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    source_cfg: watcher::Config,
    managed_cfg: watcher::Config,
    leadership: &Leadership,
) -> Controller<DynamicObject> {
    let api = if ns.is_empty() {
        Api::<DynamicObject>::all_with(client.clone(), ar)
    } else {
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, ar)
    };
    Controller::new_with(api, source_cfg, ar.clone())
        .owns(scoped::<DNSEndpoint>(client, ns), managed_cfg)
        .reconcile_all_on(leadership_gained(leadership))
}

async fn run(c: Controller<DynamicObject>, ar: ApiResource, ctx: Arc<Ctx>) {
    c.run(move |o, ctx| reconcile(o, ctx, ar.clone()), error_policy, ctx).for_each(log_queue_error).await;
}

async fn reconcile(o: Arc<DynamicObject>, ctx: Arc<Ctx>, ar: ApiResource) -> Result<Action, Error> {
    let obj = SourceObject::Crd(&o);
    let (action, rendered) = reconcile_outcome(obj, o.as_ref(), &ar, SourceKind::Crd, &ctx).await?;
    // external-dns writes it once it has read the object's endpoints; here, once they are in
    // the DNSEndpoint the provider controller serves. Objects another instance selects are
    // not reported on.
    let processed = rendered && o.meta().deletion_timestamp.is_none() && source::selected(obj, &ctx.cfg);
    if let (true, Some(generation)) = (processed, generation_to_record(&o)) {
        if ctx.leadership.is_leader() {
            write_observed_generation(&ctx, &o, &ar, generation, &obj.describe()).await?;
        }
    }
    Ok(action)
}

/// Merge-patches `status.observedGeneration` through the status subresource; the write's
/// own watch event then finds it recorded and writes nothing.
async fn write_observed_generation(
    ctx: &Ctx,
    o: &DynamicObject,
    ar: &ApiResource,
    generation: i64,
    what: &str,
) -> Result<(), Error> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &o.namespace().unwrap_or_default(), ar);
    let patch = serde_json::json!({"status": {"observedGeneration": generation}});
    let params = PatchParams { field_manager: Some(SOURCE_MANAGER.into()), ..Default::default() };
    match api.patch_status(&o.name_any(), &params, &Patch::Merge(&patch)).await {
        Ok(_) => {
            ctx.metrics.status_writes.get_or_create(&crate::metrics::KindLabels { kind: "crd-source".into() }).inc();
            debug!(source = %what, generation, "status.observedGeneration written");
            Ok(())
        }
        // Gone since it was read, or a kind without a status subresource: nothing to record.
        Err(kube::Error::Api(e)) if e.code == 404 => {
            warn!(source = %what, "status.observedGeneration not written: the object is gone or its kind has no status subresource");
            Ok(())
        }
        Err(source) => Err(Error::WriteStatus { kind: "crd source object", name: what.to_string(), source }),
    }
}
