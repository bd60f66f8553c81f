//! TXT ownership registry, readable and writable side by side with external-dns.
//!
//! Ownership of a record lives in a companion TXT record, so that several controllers (extdns
//! and external-dns instances alike) can share a zone and each touches only what it owns. Every
//! byte that another controller reads is kept exactly as external-dns writes it: the label
//! text, the companion names, and the AES-GCM envelope. Where external-dns has a quirk that
//! decides who owns what (AAAA records never inherit an old-format TXT, `%{record_type}`
//! templates matched in a fixed type order) we keep the quirk, because two controllers that
//! disagree about ownership is worse than both being odd in the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::RngCore;

use crate::endpoint::{label, Endpoint, RecordKey, RecordType};
use crate::provider::{Change, Zone};

/// Labels carried by an ownership TXT record, keys without the `external-dns/` prefix.
pub use crate::labels::Labels;

const HERITAGE_KEY: &str = "heritage";
const HERITAGE: &str = "external-dns";
const RECORD_TYPE_TEMPLATE: &str = "%{record_type}";
const AES_KEY_LEN: usize = 32;
/// Go's `cipher.NewGCM` default, which external-dns uses.
const GCM_NONCE_LEN: usize = 12;
/// A TXT value is at most a few KiB; anything that inflates beyond this is not ours.
const MAX_PLAINTEXT_LEN: u64 = 64 * 1024;

/// Type names external-dns recognises inside TXT names, in its matching order: with a
/// `%{record_type}` template the first type whose affix matches wins, so the order decides
/// ownership and must stay as external-dns has it. `caa` is ours, appended last, so that the
/// TXT we write for a CAA record maps back to it.
const TXT_NAME_TYPES: [&str; 11] = ["a", "aaaa", "cname", "ns", "mx", "ptr", "srv", "naptr", "txt", "dname", "caa"];

/// Go's `base64.StdEncoding`: padded, and lenient about non-zero trailing bits.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Configuration of the TXT registry, mirroring external-dns's `--txt-*` flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxtRegistryConfig {
    /// `--txt-owner-id`: identifies this controller in the `owner` label.
    pub owner_id: String,
    /// `--txt-prefix`, may contain `%{record_type}`. Exclusive with `suffix`.
    pub prefix: String,
    /// `--txt-suffix`, may contain `%{record_type}`. Exclusive with `prefix`.
    pub suffix: String,
    /// `--txt-wildcard-replacement`: stands in for a leading `*` label in TXT names.
    pub wildcard_replacement: String,
    /// `--txt-encrypt-aes-key`: 32 bytes as given, or the standard base64 of 32 bytes.
    /// `Some` turns encryption on.
    pub aes_key: Option<Vec<u8>>,
}

/// Why a TXT registry cannot be built from its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("TXT registry owner id: must not be empty")]
    EmptyOwnerId,
    /// The label format has no escaping, so these characters would make our own records
    /// unrecognisable to us (and to external-dns).
    #[error("TXT registry owner id {0:?}: must not contain ',', '=' or '\"'")]
    InvalidOwnerId(String),
    #[error("TXT registry prefix {prefix:?} and suffix {suffix:?}: only one of them may be set")]
    PrefixAndSuffix { prefix: String, suffix: String },
    #[error("TXT encryption key: must be 32 bytes, or the standard base64 encoding of 32 bytes; got {len} bytes")]
    InvalidAesKey { len: usize },
}

/// The ownership registry: maps provider records to owned records and back.
#[derive(Clone)]
pub struct TxtRegistry {
    owner_id: String,
    names: AffixNameMapper,
    cipher: Option<LabelCipher>,
}

impl std::fmt::Debug for TxtRegistry {
    // The key must not end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxtRegistry")
            .field("owner_id", &self.owner_id)
            .field("names", &self.names)
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

/// One ownership TXT record as read from the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnershipTxt {
    /// Exactly as the provider returned it, so that a delete or update matches the stored
    /// RRset.
    record: Endpoint,
    labels: Labels,
    /// The value of `record` the labels come from.
    value: String,
    /// The other values of `record` (SPF, site verification, other owners' claims), exactly
    /// as stored: never ours to change, so they stay in the RRset whatever we do to ours.
    others: Vec<String>,
}

impl OwnershipTxt {
    fn owner(&self) -> Option<&str> {
        self.labels.get(label::OWNER).map(String::as_str)
    }
}

/// A zone's records as the planner should see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryView {
    /// Data records (TXT ownership records removed) with labels attached from their ownership
    /// TXT: `owner`, `resource`, nonce, any others. A record without an ownership TXT has no
    /// owner label.
    pub endpoints: Vec<Endpoint>,
    /// New-format ownership TXT records, by the key of the record they back (name with the
    /// wildcard replacement applied, as external-dns keys them).
    new_format: BTreeMap<RecordKey, OwnershipTxt>,
    /// Old-format ownership TXT records by (name, set identifier): they back every type but
    /// AAAA at that name.
    old_format: BTreeMap<(String, String), OwnershipTxt>,
    /// The zone the records come from, when known: ownership TXT records must fit in it.
    zone: Option<Zone>,
    /// TXT RRsets holding no ownership value, exactly as stored, by (name, set identifier):
    /// an ownership value for such a name joins the RRset instead of replacing it.
    data_txt: BTreeMap<(String, String), Endpoint>,
}

impl RegistryView {
    /// Every ownership TXT record of the zone, exactly as read.
    pub fn ownership_records(&self) -> impl Iterator<Item = &Endpoint> {
        self.new_format.values().chain(self.old_format.values()).map(|t| &t.record)
    }

    /// Whether a TXT of this name can exist in the view's zone.
    fn fits(&self, txt_name: &str) -> bool {
        self.zone.as_ref().is_none_or(|z| z.contains(txt_name))
    }
}

/// What a provider change produced by [`TxtRegistry::expand`] does for its planned change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It is the planned change itself.
    Data,
    /// It writes or removes the ownership TXT of the records of the planned changes `backs`
    /// (indexes into the planned changes): one, or several when records share an old-format
    /// TXT, as the A and AAAA at an apex do.
    Ownership { backs: Vec<usize> },
}

/// One provider change produced by [`TxtRegistry::expand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expanded {
    /// The planned change this provider change is reported against.
    pub index: usize,
    pub role: Role,
    pub change: Change,
}

impl Expanded {
    /// Planned changes passed through as they are: no ownership registry.
    pub fn data_only(changes: &[Change]) -> Vec<Expanded> {
        changes
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, change)| Expanded { index, role: Role::Data, change })
            .collect()
    }
}

/// Where the ownership TXT of a record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// `<type>-<name>` (with the affixes), as external-dns writes today.
    New,
    /// The old format at the record's own name: for records whose new-format name falls
    /// outside the zone, the apex without a prefix ending in a dot. external-dns writes that
    /// new-format TXT nowhere (no zone takes it) and older releases wrote this one.
    Old,
    /// Neither name is in the zone: no ownership TXT can be written.
    Nowhere,
}

/// Which nonce an encrypted TXT value is sealed with.
enum NonceChoice<'a> {
    /// The `txt-encryption-nonce` label of the endpoint, else a fresh one.
    FromLabels,
    /// The nonce a previous value with the same plaintext was sealed with, else a fresh one.
    Reuse(Option<&'a str>),
    /// A fresh random nonce: sealing a different plaintext under a used nonce would leak
    /// the key stream.
    Fresh,
}

impl TxtRegistry {
    pub fn new(cfg: TxtRegistryConfig) -> Result<Self, RegistryError> {
        if cfg.owner_id.is_empty() {
            return Err(RegistryError::EmptyOwnerId);
        }
        if cfg.owner_id.contains([',', '=', '"']) {
            return Err(RegistryError::InvalidOwnerId(cfg.owner_id));
        }
        if !cfg.prefix.is_empty() && !cfg.suffix.is_empty() {
            return Err(RegistryError::PrefixAndSuffix { prefix: cfg.prefix, suffix: cfg.suffix });
        }
        let cipher = match cfg.aes_key {
            None => None,
            Some(key) => Some(LabelCipher::new(&key)?),
        };
        Ok(TxtRegistry {
            owner_id: cfg.owner_id,
            names: AffixNameMapper::new(&cfg.prefix, &cfg.suffix, &cfg.wildcard_replacement),
            cipher,
        })
    }

    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// Name of the (new-format) ownership TXT record for a record of this name and type.
    pub fn txt_name(&self, dns_name: &str, record_type: RecordType) -> String {
        self.names.to_txt_name(dns_name, record_type)
    }

    /// Raw provider records of one zone -> view. Ownership TXT records are hidden; a TXT
    /// record whose content is not an external-dns ownership record is ordinary data and stays
    /// in `endpoints`. New-format TXT wins over old-format when both exist. Old-format TXT
    /// (same name as the record) applies to every record type at that name but AAAA, as
    /// external-dns does.
    ///
    /// A TXT RRset holding an ownership value next to other values (the apex, where the
    /// ownership TXT is old-format, also holding SPF or site-verification values) is split:
    /// the values that are no ownership record stay in `endpoints` as a TXT record nobody
    /// owns, so the planner never deletes them; when our value and another owner's share the
    /// RRset, ours decides.
    pub fn view(&self, raw: Vec<Endpoint>) -> RegistryView {
        self.view_with_zone(raw, None)
    }

    /// As [`Self::view`], for the records of zone `zone`: ownership TXT records that would
    /// fall outside it are looked for, and written, at the record's own name.
    pub fn view_in_zone(&self, raw: Vec<Endpoint>, zone: &str) -> RegistryView {
        self.view_with_zone(raw, Some(Zone::named(zone)))
    }

    fn view_with_zone(&self, raw: Vec<Endpoint>, zone: Option<Zone>) -> RegistryView {
        let mut view = RegistryView { zone, ..RegistryView::default() };
        // TXT values split off an RRset that also holds an ownership value: data of somebody
        // else's that no ownership TXT may claim, since it cannot be told apart from ours.
        let mut split: BTreeSet<RecordKey> = BTreeSet::new();
        for record in raw {
            if record.record_type != RecordType::TXT {
                view.endpoints.push(record);
                continue;
            }
            let parsed: Vec<(usize, Labels)> =
                record.targets.iter().enumerate().filter_map(|(i, t)| Some((i, self.parse_txt(t)?))).collect();
            // Ours first, so that another owner's value beside ours never hides our claim.
            let Some((chosen, labels)) = parsed
                .iter()
                .find(|(_, l)| l.get(label::OWNER).map(String::as_str) == Some(self.owner_id.as_str()))
                .or_else(|| parsed.first())
                .cloned()
            else {
                view.data_txt.insert((record.dns_name.clone(), record.set_identifier.clone()), record.clone());
                view.endpoints.push(record);
                continue;
            };
            let others: Vec<String> =
                record.targets.iter().enumerate().filter(|(i, _)| *i != chosen).map(|(_, t)| t.clone()).collect();
            // SPF or site-verification values at an apex that also holds an old-format
            // ownership value stay visible as data; only the ownership values are hidden.
            let foreign: Vec<String> = record
                .targets
                .iter()
                .enumerate()
                .filter(|(i, _)| !parsed.iter().any(|(p, _)| p == i))
                .map(|(_, t)| t.clone())
                .collect();
            if !foreign.is_empty() {
                let mut data = record.clone();
                data.targets = foreign;
                split.insert(data.key());
                view.endpoints.push(data);
            }
            // A TXT carrying heritage=external-dns is hidden even when its name maps to no
            // record, as external-dns does: it is somebody's ownership record, never data.
            let Some((name, kind)) = self.names.to_endpoint_name(&record.dns_name) else {
                continue;
            };
            let set_identifier = record.set_identifier.clone();
            let value = record.targets[chosen].clone();
            let txt = OwnershipTxt { record, labels, value, others };
            match kind {
                TxtNameKind::Old => {
                    view.old_format.entry((name, set_identifier)).or_insert(txt);
                }
                TxtNameKind::New(record_type) => {
                    let key = RecordKey { dns_name: name, set_identifier, record_type };
                    view.new_format.entry(key).or_insert(txt);
                }
                // A type extdns does not model (NAPTR, DNAME): backs nothing we hold.
                TxtNameKind::Foreign => {}
            }
        }
        let mut endpoints = std::mem::take(&mut view.endpoints);
        for ep in endpoints.iter_mut().filter(|e| !split.contains(&e.key())) {
            if let Some(txt) = self.backing_of(&view, ep) {
                ep.labels.extend(txt.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        view.endpoints = endpoints;
        view
    }

    /// Labels of the ownership TXT that claims `ep`'s name, type and set identifier in
    /// `view`, whether or not the record itself exists: a planner about to create a record
    /// sees the claim a record deleted out of band left behind.
    pub fn claim<'v>(&self, view: &'v RegistryView, ep: &Endpoint) -> Option<&'v Labels> {
        self.backing_of(view, ep).map(|t| &t.labels)
    }

    fn placement(&self, view: &RegistryView, key: &RecordKey) -> Placement {
        // Below the apex the affixed first label keeps the name inside the zone: only apex
        // records need a look (this runs for every record of every pass).
        if view.zone.as_ref().is_none_or(|z| key.dns_name != z.name) {
            return Placement::New;
        }
        if view.fits(&self.names.to_txt_name(&key.dns_name, key.record_type)) {
            Placement::New
        } else if view.fits(&self.names.to_old_txt_name(&key.dns_name)) {
            Placement::Old
        } else {
            Placement::Nowhere
        }
    }

    /// The ownership TXT that decides who owns a record like `ep`: new format first, then
    /// old format except for AAAA (as external-dns reads them). Where the new format cannot
    /// exist, the old format backs every type.
    fn backing<'v>(&self, view: &'v RegistryView, key: &RecordKey) -> Option<&'v OwnershipTxt> {
        let old = || view.old_format.get(&(key.dns_name.clone(), key.set_identifier.clone()));
        match self.placement(view, key) {
            Placement::New => {
                view.new_format.get(key).or_else(|| if key.record_type == RecordType::AAAA { None } else { old() })
            }
            Placement::Old | Placement::Nowhere => old(),
        }
    }

    /// [`Self::backing`] of `ep`, and for a Route53 alias without a TXT of its own type the
    /// `cname-` TXT: external-dns v0.18 and later plan an alias as the CNAME it was asked for
    /// and write its ownership under `cname-<name>` only, for the A and the AAAA alias alike.
    fn backing_of<'v>(&self, view: &'v RegistryView, ep: &Endpoint) -> Option<&'v OwnershipTxt> {
        let key = self.lookup_key(ep);
        self.backing(view, &key).or_else(|| self.alias_cname_txt(view, ep))
    }

    /// The `cname-` TXT backing the alias `ep`, if `ep` is an A or AAAA alias and it exists.
    fn alias_cname_txt<'v>(&self, view: &'v RegistryView, ep: &Endpoint) -> Option<&'v OwnershipTxt> {
        if !is_alias(ep) || !matches!(ep.record_type, RecordType::A | RecordType::AAAA) {
            return None;
        }
        let key = RecordKey { record_type: RecordType::CNAME, ..self.lookup_key(ep) };
        view.new_format.get(&key)
    }

    /// Expands planned data changes into provider changes including ownership TXT changes.
    ///
    /// - `Create(ep)` adds the new-format TXT for `ep` (owner = ours). If a TXT of ours is
    ///   already there (its record was removed out of band) it is left alone when its labels
    ///   match, updated otherwise; a TXT claimed by another owner is never overwritten.
    /// - `Update{old,new}` touches no TXT while the new-format TXT carries the labels `new`
    ///   asks for. A missing new-format TXT (record owned through an old-format TXT only, or
    ///   not owned at all) is created; one of ours with other labels (say a new `resource`)
    ///   is updated. `Update` is expected to keep the record's name, type and set identifier.
    /// - `Delete(ep)` deletes the ownership TXT records of ours backing `ep`, as stored. An
    ///   old-format TXT is deleted only when no record that is left at that name still
    ///   depends on it.
    ///
    /// A TXT RRset that holds other values besides ours (an apex with SPF or site-verification
    /// values, where the ownership value goes to the apex itself) is never created, replaced or
    /// deleted as a whole: our value is added to or removed from it by an `Update` of the
    /// whole RRset, from exactly what is stored to the same values plus or minus ours.
    ///
    /// Each produced change says which planned change it belongs to and whether it is that
    /// change or an ownership change for it; [`crate::apply::apply_with_ownership`] uses
    /// that to keep a record and its ownership TXT together.
    pub fn expand(&self, view: &RegistryView, changes: &[Change]) -> Vec<Expanded> {
        let mut x = Expansion {
            view,
            changes,
            deleted: changes
                .iter()
                .filter_map(|c| match c {
                    Change::Delete(ep) => Some(ep.key()),
                    _ => None,
                })
                .collect(),
            old_format_deleted: BTreeSet::new(),
            old_format_written: BTreeMap::new(),
            out: Vec::with_capacity(changes.len() * 2),
        };
        for (i, change) in changes.iter().enumerate() {
            x.out.push(Expanded { index: i, role: Role::Data, change: change.clone() });
            let txt = match change {
                Change::Create(ep) | Change::Update { new: ep, .. } => match self.placement(view, &self.lookup_key(ep))
                {
                    Placement::Nowhere => None,
                    Placement::Old => {
                        self.expand_old_format(&mut x, i, ep);
                        None
                    }
                    Placement::New if matches!(change, Change::Create(_)) => self.create_txt(view, ep),
                    Placement::New => self.update_txt(view, ep),
                },
                Change::Delete(ep) => {
                    self.expand_delete(&mut x, i, ep);
                    None
                }
            };
            if let Some(change) = txt {
                x.out.push(Expanded { index: i, role: Role::Ownership { backs: vec![i] }, change });
            }
        }
        x.out
    }

    /// The new-format TXT change for a created record: a new TXT, or the stored one of ours
    /// refreshed (its record was removed out of band).
    fn create_txt(&self, view: &RegistryView, ep: &Endpoint) -> Option<Change> {
        match view.new_format.get(&self.lookup_key(ep)) {
            None => Some(self.create_or_join(view, self.ownership_record(ep))),
            Some(stored) => self.refresh_stored(stored, ep),
        }
    }

    /// The new-format TXT change for an updated record (`new` its new state).
    fn update_txt(&self, view: &RegistryView, new: &Endpoint) -> Option<Change> {
        let key = self.lookup_key(new);
        if let Some(stored) = view.new_format.get(&key) {
            return self.refresh_stored(stored, new);
        }
        let old_format = if new.record_type == RecordType::AAAA {
            None
        } else {
            view.old_format.get(&(key.dns_name, key.set_identifier))
        };
        // Migrating away from somebody else's old-format claim would be taking the record
        // over; that is not the registry's call.
        if old_format.is_some_and(|t| !self.owns(t)) {
            return None;
        }
        let desired = self.desired_labels(new);
        let nonce = old_format
            .filter(|t| same_labels(&t.labels, &desired))
            .and_then(|t| t.labels.get(label::TXT_ENCRYPTION_NONCE))
            .map(String::as_str);
        let txt = self.build_ownership_record(new, &desired, NonceChoice::Reuse(nonce));
        Some(self.create_or_join(view, txt))
    }

    /// The old-format TXT of a record created or updated where that format is kept. It backs
    /// several records (the apex A and AAAA): written once, by the first of them, and the
    /// others are listed as depending on that change.
    fn expand_old_format(&self, x: &mut Expansion<'_>, i: usize, ep: &Endpoint) {
        let key = self.lookup_key(ep);
        let old_key = (key.dns_name, key.set_identifier);
        if let Some(written) = x.old_format_written.get(&old_key) {
            if let Some(Role::Ownership { backs }) = written.map(|pos| &mut x.out[pos].role) {
                backs.push(i);
            }
            return;
        }
        let txt_change = match x.view.old_format.get(&old_key) {
            None => {
                let mut txt = self.ownership_record(ep);
                txt.dns_name = self.names.to_old_txt_name(&ep.dns_name);
                Some(self.create_or_join(x.view, txt))
            }
            Some(stored) => self.refresh_stored(stored, ep),
        };
        let pos = txt_change.map(|change| {
            x.out.push(Expanded { index: i, role: Role::Ownership { backs: vec![i] }, change });
            x.out.len() - 1
        });
        x.old_format_written.insert(old_key, pos);
    }

    /// The ownership TXTs of ours that go with a deleted record: its new-format TXT, an
    /// external-dns `cname-` TXT with the last alias it backs, an old-format TXT once no
    /// record left at that name depends on it.
    fn expand_delete(&self, x: &mut Expansion<'_>, i: usize, ep: &Endpoint) {
        let key = self.lookup_key(ep);
        if let Some(txt) = x.view.new_format.get(&key).filter(|t| self.owns(t)) {
            x.out.push(Expanded { index: i, role: Role::Ownership { backs: vec![i] }, change: removal(txt) });
        }
        self.expand_alias_txt_delete(x, i, ep);
        if ep.record_type == RecordType::AAAA && self.placement(x.view, &key) == Placement::New {
            return;
        }
        let old_key = (key.dns_name, key.set_identifier);
        if x.old_format_deleted.contains(&old_key) {
            return;
        }
        let Some(txt) = x.view.old_format.get(&old_key) else { return };
        if self.owns(txt) && !self.old_format_still_needed(x.view, &old_key, &x.deleted) {
            // Gone only once every record of this batch that leaned on it is.
            let backs = positions(x.changes, |e| self.leans_on_old_format(x.view, e, &old_key));
            x.out.push(Expanded { index: i, role: Role::Ownership { backs }, change: removal(txt) });
            x.old_format_deleted.insert(old_key);
        }
    }

    /// An external-dns `cname-` TXT backing an A and an AAAA alias goes with the last of them,
    /// sent with the first of their deletes in the batch.
    fn expand_alias_txt_delete(&self, x: &mut Expansion<'_>, i: usize, ep: &Endpoint) {
        let Some(txt) = self.alias_cname_txt(x.view, ep).filter(|t| self.owns(t)) else { return };
        let other = if ep.record_type == RecordType::A { RecordType::AAAA } else { RecordType::A };
        let other_key = RecordKey { record_type: other, ..ep.key() };
        let still_needed = !x.deleted.contains(&other_key)
            && x.view
                .endpoints
                .iter()
                .any(|e| e.key() == other_key && is_alias(e) && !x.view.new_format.contains_key(&self.lookup_key(e)));
        let same_alias =
            |e: &Endpoint| e.dns_name == ep.dns_name && e.set_identifier == ep.set_identifier && is_alias(e);
        let backs = positions(x.changes, same_alias);
        if !still_needed && backs.first() == Some(&i) {
            x.out.push(Expanded { index: i, role: Role::Ownership { backs }, change: removal(txt) });
        }
    }

    /// The new-format ownership TXTs to add for records of ours that only an old-format TXT
    /// backs, as external-dns adds them on its first pass (its registry's "missing records"),
    /// so that a later external-dns release, which reads only the new format for some types,
    /// still finds the records owned. The data records are not touched; the labels are the
    /// stored ones.
    pub fn missing_new_format(&self, view: &RegistryView) -> Vec<Change> {
        let mut out = Vec::new();
        let mut seen: BTreeSet<RecordKey> = BTreeSet::new();
        for ep in &view.endpoints {
            if ep.labels.get(label::OWNER).map(String::as_str) != Some(self.owner_id.as_str()) {
                continue;
            }
            let key = self.lookup_key(ep);
            if self.placement(view, &key) != Placement::New
                || view.new_format.contains_key(&key)
                || self.alias_cname_txt(view, ep).is_some()
                || !seen.insert(key.clone())
            {
                continue;
            }
            let Some(stored) = view.old_format.get(&(key.dns_name.clone(), key.set_identifier.clone())) else {
                continue;
            };
            if !self.owns(stored) || key.record_type == RecordType::AAAA {
                continue;
            }
            let mut labels = stored.labels.clone();
            let nonce = labels.remove(label::TXT_ENCRYPTION_NONCE);
            let txt = self.build_ownership_record(ep, &labels, NonceChoice::Reuse(nonce.as_deref()));
            out.push(self.create_or_join(view, txt));
        }
        out
    }

    /// Removals of ownership TXTs of ours that back no record any more and that no record
    /// `wanted` is about to be created under: the leftovers of a delete whose answer was lost
    /// (the record went, its TXT removal was never sent). A record and its TXT leave
    /// together; without this a TXT outlives its record, and the namespace that wrote it,
    /// for good. `keep(name)` is false for names this provider does not manage (outside its
    /// `spec.domains`): those TXTs are never touched.
    pub fn orphaned_ownership(
        &self,
        view: &RegistryView,
        wanted: &BTreeSet<RecordKey>,
        managed_types: &[RecordType],
        keep: impl Fn(&str) -> bool,
    ) -> Vec<Change> {
        let held: BTreeSet<RecordKey> = view.endpoints.iter().map(|e| self.lookup_key(e)).collect();
        let held_names: BTreeSet<(&str, &str)> =
            held.iter().map(|k| (k.dns_name.as_str(), k.set_identifier.as_str())).collect();
        let wanted_keys: BTreeSet<RecordKey> = wanted
            .iter()
            .map(|k| RecordKey { dns_name: self.names.replace_wildcard(&k.dns_name), ..k.clone() })
            .collect();
        let wanted_names: BTreeSet<(&str, &str)> =
            wanted_keys.iter().map(|k| (k.dns_name.as_str(), k.set_identifier.as_str())).collect();
        let mut out = Vec::new();
        for (key, txt) in &view.new_format {
            // A `cname-` TXT also backs the A and AAAA aliases at its name.
            let backs_alias = key.record_type == RecordType::CNAME
                && [RecordType::A, RecordType::AAAA].into_iter().any(|t| {
                    let k = RecordKey { record_type: t, ..key.clone() };
                    held.contains(&k) || wanted_keys.contains(&k)
                });
            // A TXT of a type the provider does not manage backs a record it never judges
            // (another instance with our owner id may manage that type): left alone.
            let unmanaged = !managed_types.contains(&key.record_type);
            if !self.owns(txt)
                || unmanaged
                || !keep(&key.dns_name)
                || held.contains(key)
                || wanted_keys.contains(key)
                || backs_alias
            {
                continue;
            }
            out.push(removal(txt));
        }
        for ((name, set_identifier), txt) in &view.old_format {
            let at = (name.as_str(), set_identifier.as_str());
            if !self.owns(txt) || !keep(name) || held_names.contains(&at) || wanted_names.contains(&at) {
                continue;
            }
            out.push(removal(txt));
        }
        out
    }

    /// Whether `ep` gets (or may get) its ownership from the old-format TXT at `old_key`.
    fn leans_on_old_format(&self, view: &RegistryView, ep: &Endpoint, old_key: &(String, String)) -> bool {
        let key = self.lookup_key(ep);
        key.dns_name == old_key.0
            && key.set_identifier == old_key.1
            && !(key.record_type == RecordType::AAAA && self.placement(view, &key) == Placement::New)
    }

    /// Writes the ownership record `txt`: a create, or, when its name already holds a TXT
    /// RRset of somebody's data (an SPF value at the apex), an update that adds our value
    /// and keeps theirs, TTL included.
    fn create_or_join(&self, view: &RegistryView, txt: Endpoint) -> Change {
        match view.data_txt.get(&(txt.dns_name.clone(), txt.set_identifier.clone())) {
            None => Change::Create(txt),
            Some(stored) => {
                let mut joined = stored.clone();
                joined.labels.clear();
                joined.targets.extend(txt.targets);
                // In the order listings give, so that a later exact match finds it.
                joined.targets.sort();
                Change::Update { old: stored.clone(), new: joined }
            }
        }
    }

    /// The ownership TXT record extdns writes for `ep`: new-format name, `ep`'s labels with
    /// `owner` set to ours, `ep`'s TTL, set identifier and provider-specific properties (a
    /// weighted Route53 record needs its TXT weighted too). With encryption on, a
    /// `txt-encryption-nonce` label on `ep` is reused so that an unchanged record yields
    /// identical bytes.
    pub fn ownership_record(&self, ep: &Endpoint) -> Endpoint {
        let desired = self.desired_labels(ep);
        self.build_ownership_record(ep, &desired, NonceChoice::FromLabels)
    }

    fn build_ownership_record(&self, ep: &Endpoint, desired: &Labels, nonce: NonceChoice<'_>) -> Endpoint {
        let plain = serialize_labels(desired);
        let content = match &self.cipher {
            None => plain,
            Some(cipher) => {
                let stored = match nonce {
                    NonceChoice::FromLabels => ep.labels.get(label::TXT_ENCRYPTION_NONCE).map(String::as_str),
                    NonceChoice::Reuse(n) => n,
                    NonceChoice::Fresh => None,
                };
                // A nonce label that does not decode is treated as absent rather than trusted.
                let nonce = stored.and_then(decode_nonce).unwrap_or_else(random_nonce);
                cipher.encrypt(&plain, &nonce)
            }
        };
        Endpoint {
            dns_name: self.names.to_txt_name(&ep.dns_name, ep.record_type),
            record_type: RecordType::TXT,
            targets: vec![content],
            ttl: ep.ttl,
            set_identifier: ep.set_identifier.clone(),
            // As external-dns's registry: a webhook learns which record a TXT backs.
            labels: std::iter::once((label::OWNED_RECORD.to_string(), ep.dns_name.clone())).collect(),
            provider_specific: ep.provider_specific.clone(),
        }
    }

    /// `ep`'s labels as they go into its TXT: ours as owner, the nonce kept out of the text.
    fn desired_labels(&self, ep: &Endpoint) -> Labels {
        let mut labels = ep.labels.clone();
        labels.remove(label::TXT_ENCRYPTION_NONCE);
        labels.insert(label::OWNER.to_string(), self.owner_id.clone());
        labels
    }

    /// The change that brings a stored new-format TXT in line with `ep`, if any is needed.
    fn refresh_stored(&self, stored: &OwnershipTxt, ep: &Endpoint) -> Option<Change> {
        if !self.owns(stored) {
            return None;
        }
        let desired = self.desired_labels(ep);
        if same_labels(&stored.labels, &desired) {
            return None;
        }
        let built = self.build_ownership_record(ep, &desired, NonceChoice::Fresh);
        let new = if stored.others.is_empty() {
            // In place: an old-format TXT stays at the name it was found at.
            Endpoint { dns_name: stored.record.dns_name.clone(), ..built }
        } else {
            let mut new = stored.record.clone();
            new.labels.clear();
            new.targets = stored.others.clone();
            new.targets.extend(built.targets);
            new.targets.sort();
            new
        };
        Some(Change::Update { old: stored.record.clone(), new })
    }

    fn owns(&self, txt: &OwnershipTxt) -> bool {
        txt.owner() == Some(self.owner_id.as_str())
    }

    /// True when a record that survives this batch still gets its ownership from the
    /// old-format TXT at `old_key`.
    fn old_format_still_needed(
        &self,
        view: &RegistryView,
        old_key: &(String, String),
        deleted: &BTreeSet<RecordKey>,
    ) -> bool {
        view.endpoints.iter().any(|e| {
            // TXT data at that name is the rest of the very RRset: it never leans on our value.
            if deleted.contains(&e.key()) || e.record_type == RecordType::TXT {
                return false;
            }
            let key = self.lookup_key(e);
            let backed_by_old = match self.placement(view, &key) {
                Placement::New => key.record_type != RecordType::AAAA && !view.new_format.contains_key(&key),
                Placement::Old | Placement::Nowhere => true,
            };
            backed_by_old && key.dns_name == old_key.0 && key.set_identifier == old_key.1
        })
    }

    /// The name a record is planned under when a zone is planned name by name: a data
    /// record's own name, an ownership TXT's the name of the record it backs (both with the
    /// wildcard replacement applied), so that a name and its ownership records are always
    /// planned together.
    pub fn group_name(&self, record: &Endpoint) -> String {
        if record.record_type == RecordType::TXT {
            if let Some((name, _)) = self.names.to_endpoint_name(&record.dns_name) {
                return name;
            }
        }
        self.names.replace_wildcard(&record.dns_name)
    }

    /// [`Self::group_name`] of a data record named `dns_name`.
    pub fn name_group(&self, dns_name: &str) -> String {
        self.names.replace_wildcard(dns_name)
    }

    /// The key under which ownership TXT records of `ep` are filed: external-dns maps TXT
    /// names back to the wildcard replacement, never to `*`.
    fn lookup_key(&self, ep: &Endpoint) -> RecordKey {
        RecordKey {
            dns_name: self.names.replace_wildcard(&ep.dns_name),
            set_identifier: ep.set_identifier.clone(),
            record_type: ep.record_type,
        }
    }

    /// The record name an ownership TXT at `txt_name` would back (with the wildcard
    /// replacement applied), if the name reads as one.
    pub fn backed_name(&self, txt_name: &str) -> Option<String> {
        self.names.to_endpoint_name(txt_name).map(|(name, _)| name)
    }

    /// The names the new-format ownership TXTs of records at `name` take, one per type.
    pub fn ownership_names(&self, name: &str) -> Vec<String> {
        RecordType::ALL.iter().map(|t| self.names.to_txt_name(name, *t)).collect()
    }

    /// Whether `value` would be read as an ownership record: plain, or sealed with this
    /// registry's key (a copy of an encrypted ownership value published as data elsewhere).
    /// Such a value is never published as a TXT data record.
    pub fn reads_as_ownership(&self, value: &str) -> bool {
        self.parse_txt(value).is_some()
    }

    /// Labels of one TXT value if it is an external-dns ownership record. With a key, an
    /// encrypted value is tried first and a plain one accepted too (records written before
    /// encryption was turned on); a value that fails to decrypt is plain text to us, which
    /// without heritage means somebody's data.
    fn parse_txt(&self, value: &str) -> Option<Labels> {
        if let Some(cipher) = &self.cipher {
            if let Ok((plain, nonce)) = cipher.decrypt(value.trim_matches('"')) {
                let mut labels = parse_labels(&plain)?;
                labels.insert(label::TXT_ENCRYPTION_NONCE.to_string(), nonce);
                return Some(labels);
            }
        }
        parse_labels(value)
    }
}

/// A Route53 alias record (provider-specific `alias=true`, as external-dns names it).
fn is_alias(ep: &Endpoint) -> bool {
    ep.provider_specific.iter().any(|p| p.name == "alias" && p.value.eq_ignore_ascii_case("true"))
}

/// The state of one [`TxtRegistry::expand`].
struct Expansion<'a> {
    view: &'a RegistryView,
    changes: &'a [Change],
    /// Keys of the records the batch deletes.
    deleted: BTreeSet<RecordKey>,
    /// Old-format TXTs (name, set identifier) whose removal is already in `out`.
    old_format_deleted: BTreeSet<(String, String)>,
    /// Old-format TXTs written for a record of the batch: the position of the change in
    /// `out`, `None` when the stored TXT needed no change.
    old_format_written: BTreeMap<(String, String), Option<usize>>,
    out: Vec<Expanded>,
}

/// Positions in `changes` of the deletes of records that `pick` selects.
fn positions(changes: &[Change], pick: impl Fn(&Endpoint) -> bool) -> Vec<usize> {
    changes
        .iter()
        .enumerate()
        .filter_map(|(j, c)| match c {
            Change::Delete(e) if pick(e) => Some(j),
            _ => None,
        })
        .collect()
}

/// The change that takes our ownership value out of its RRset: a delete of the RRset, or an
/// update keeping the values that are not ours.
fn removal(txt: &OwnershipTxt) -> Change {
    if txt.others.is_empty() {
        return Change::Delete(txt.record.clone());
    }
    let mut kept = txt.record.clone();
    kept.labels.clear();
    kept.targets = txt.others.clone();
    kept.targets.sort();
    Change::Update { old: txt.record.clone(), new: kept }
}

/// Equal as far as the TXT text goes: the nonce is envelope, not content.
fn same_labels(a: &Labels, b: &Labels) -> bool {
    let content = |l: &Labels| l.iter().filter(|(k, _)| k.as_str() != label::TXT_ENCRYPTION_NONCE).count();
    content(a) == content(b)
        && a.iter().filter(|(k, _)| k.as_str() != label::TXT_ENCRYPTION_NONCE).all(|(k, v)| b.get(k) == Some(v))
}

/// external-dns's label text: `heritage=external-dns` then `external-dns/<key>=<value>` in key
/// order, comma separated, without quotes (providers add their own quoting). The nonce label
/// is never part of the text.
pub fn serialize_labels(labels: &Labels) -> String {
    let mut out = format!("{HERITAGE_KEY}={HERITAGE}");
    for (k, v) in labels {
        if k == label::TXT_ENCRYPTION_NONCE {
            continue;
        }
        out.push_str(&format!(",{HERITAGE}/{k}={v}"));
    }
    out
}

/// Parses external-dns's label text. `None` unless it carries `heritage=external-dns`: such a
/// TXT value is somebody's data, not an ownership record. Surrounding quotes are dropped,
/// tokens that are not exactly `key=value` are skipped, keys without the `external-dns`
/// prefix are ignored, and unknown `external-dns/` keys are kept.
pub fn parse_labels(text: &str) -> Option<Labels> {
    let mut labels = Labels::new();
    let mut heritage_found = false;
    for token in text.trim_matches('"').split(',') {
        let mut parts = token.split('=');
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if key == HERITAGE_KEY {
            if value != HERITAGE {
                return None;
            }
            heritage_found = true;
            continue;
        }
        // external-dns keeps any key starting with "external-dns", even without the slash.
        if key.starts_with(HERITAGE) {
            let name = key.strip_prefix("external-dns/").unwrap_or(key);
            labels.insert(name.to_string(), value.to_string());
        }
    }
    heritage_found.then_some(labels)
}

/// How a TXT name relates to the record it backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxtNameKind {
    /// Pre-v0.12 format: the record's own name, no type.
    Old,
    /// `<type>-` (or the template) names the record type.
    New(RecordType),
    /// A type external-dns knows and extdns does not model.
    Foreign,
}

/// external-dns's affix name mapper (`registry/mapper/mapper.go`, `AffixNameMapper`) without
/// the zone-aware split: the prefix goes in front of the whole name, the suffix after the
/// first label, and `<type>-` in front of the first label unless a `%{record_type}` template
/// places the type.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AffixNameMapper {
    prefix: String,
    suffix: String,
    wildcard_replacement: String,
}

impl AffixNameMapper {
    fn new(prefix: &str, suffix: &str, wildcard_replacement: &str) -> Self {
        AffixNameMapper {
            prefix: prefix.to_ascii_lowercase(),
            suffix: suffix.to_ascii_lowercase(),
            wildcard_replacement: wildcard_replacement.to_ascii_lowercase(),
        }
    }

    fn type_in_affix(&self) -> bool {
        self.prefix.contains(RECORD_TYPE_TEMPLATE) || self.suffix.contains(RECORD_TYPE_TEMPLATE)
    }

    /// external-dns reads a suffix only when no prefix is set, and a prefix otherwise
    /// (an empty one included).
    fn is_prefix(&self) -> bool {
        self.suffix.is_empty()
    }

    fn replace_wildcard(&self, dns_name: &str) -> String {
        match dns_name.split_once('.') {
            _ if self.wildcard_replacement.is_empty() => dns_name.to_string(),
            Some(("*", rest)) => format!("{}.{rest}", self.wildcard_replacement),
            None if dns_name == "*" => self.wildcard_replacement.clone(),
            _ => dns_name.to_string(),
        }
    }

    /// New-format name: `<prefix><type>-<first label><suffix>.<rest>`.
    fn to_txt_name(&self, dns_name: &str, record_type: RecordType) -> String {
        let rt = record_type.as_str().to_ascii_lowercase();
        let prefix = self.prefix.replace(RECORD_TYPE_TEMPLATE, &rt);
        let suffix = self.suffix.replace(RECORD_TYPE_TEMPLATE, &rt);
        let (first, rest) = self.split_first_label(dns_name);
        let first = if self.type_in_affix() { first } else { format!("{rt}-{first}") };
        join_txt_name(&prefix, &first, &suffix, rest)
    }

    /// Old-format name: the record's own name with the affixes, templates dropped. Recent
    /// external-dns releases no longer write these; extdns writes them only where the new
    /// format does not fit in the zone.
    fn to_old_txt_name(&self, dns_name: &str) -> String {
        let prefix = self.prefix.replace(RECORD_TYPE_TEMPLATE, "");
        let suffix = self.suffix.replace(RECORD_TYPE_TEMPLATE, "");
        let (first, rest) = self.split_first_label(dns_name);
        join_txt_name(&prefix, &first, &suffix, rest)
    }

    fn split_first_label<'a>(&self, dns_name: &'a str) -> (String, Option<&'a str>) {
        let (first, rest) = match dns_name.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (dns_name, None),
        };
        let first = if first == "*" && !self.wildcard_replacement.is_empty() {
            self.wildcard_replacement.clone()
        } else {
            first.to_string()
        };
        (first, rest)
    }

    /// The record a TXT name backs: its name (wildcard replacement kept) and how the type is
    /// given. `None` when the affixes do not match.
    fn to_endpoint_name(&self, txt_name: &str) -> Option<(String, TxtNameKind)> {
        let lower = txt_name.to_ascii_lowercase();
        if self.is_prefix() {
            return self.drop_affix_extract_type(&lower);
        }
        // The suffix sits after the first label and may itself contain dots: cut off as many
        // labels as it spans, plus the first.
        let dots = self.suffix.matches('.').count();
        let parts: Vec<&str> = lower.splitn(dots + 2, '.').collect();
        if parts.len() <= dots {
            return None;
        }
        let head = parts[..=dots].join(".");
        let (name, kind) = self.drop_affix_extract_type(&head)?;
        match parts.get(dots + 1) {
            Some(rest) => Some((format!("{name}.{rest}"), kind)),
            None => Some((name, kind)),
        }
    }

    fn drop_affix_extract_type(&self, name: &str) -> Option<(String, TxtNameKind)> {
        let mut prefix = self.prefix.clone();
        let mut suffix = self.suffix.clone();
        if self.type_in_affix() {
            for t in TXT_NAME_TYPES {
                if self.is_prefix() {
                    if let Some(stripped) = name.strip_prefix(&prefix.replace(RECORD_TYPE_TEMPLATE, t)) {
                        return Some((stripped.to_string(), type_kind(t)));
                    }
                } else if let Some(stripped) = name.strip_suffix(&suffix.replace(RECORD_TYPE_TEMPLATE, t)) {
                    return Some((stripped.to_string(), type_kind(t)));
                }
            }
            // Templates without a type: how old-format records look under a templated affix.
            prefix = prefix.replace(RECORD_TYPE_TEMPLATE, "");
            suffix = suffix.replace(RECORD_TYPE_TEMPLATE, "");
        }
        let stripped = if self.is_prefix() { name.strip_prefix(&prefix) } else { name.strip_suffix(&suffix) };
        stripped.map(extract_type_default_position)
    }
}

fn join_txt_name(prefix: &str, first: &str, suffix: &str, rest: Option<&str>) -> String {
    match rest {
        Some(rest) => format!("{prefix}{first}{suffix}.{rest}"),
        None => format!("{prefix}{first}{suffix}"),
    }
}

fn type_kind(lower_type: &str) -> TxtNameKind {
    match lower_type.parse::<RecordType>() {
        Ok(rt) => TxtNameKind::New(rt),
        Err(_) => TxtNameKind::Foreign,
    }
}

/// `<type>-<name>` when the part before the first `-` is a known type, else the old format.
fn extract_type_default_position(name: &str) -> (String, TxtNameKind) {
    let head = name.split('-').next().unwrap_or(name);
    if TXT_NAME_TYPES.contains(&head) {
        let rest = name.strip_prefix(head).and_then(|r| r.strip_prefix('-')).unwrap_or(name);
        return (rest.to_string(), type_kind(head));
    }
    (name.to_string(), TxtNameKind::Old)
}

/// Why a TXT value did not decrypt. Never surfaced: such a value is simply not ours.
#[derive(Debug, PartialEq, Eq)]
enum DecryptError {
    NotBase64,
    TooShort,
    Authentication,
    Decompression,
    NotUtf8,
}

/// external-dns's envelope (`endpoint/crypto.go`): base64-std( nonce(12) || AES-256-GCM(
/// gzip(label text)) ), no associated data. The nonce travels as the label
/// `txt-encryption-nonce`, base64-std of its 12 bytes.
#[derive(Clone)]
struct LabelCipher {
    aead: Aes256Gcm,
}

impl LabelCipher {
    /// external-dns takes a key of exactly 32 bytes as is, and otherwise its base64 decoding,
    /// which must be 32 bytes.
    fn new(key: &[u8]) -> Result<Self, RegistryError> {
        let invalid = RegistryError::InvalidAesKey { len: key.len() };
        let key = if key.len() == AES_KEY_LEN {
            key.to_vec()
        } else {
            GO_STD_BASE64.decode(key).map_err(|_| invalid.clone())?
        };
        let aead = Aes256Gcm::new_from_slice(&key).map_err(|_| invalid)?;
        Ok(LabelCipher { aead })
    }

    fn encrypt(&self, plain: &str, nonce: &[u8; GCM_NONCE_LEN]) -> String {
        let compressed = gzip(plain.as_bytes());
        let sealed = self
            .aead
            .encrypt(Nonce::from_slice(nonce), compressed.as_slice())
            .expect("AES-GCM sealing fails only beyond 64 GiB of plaintext");
        let mut envelope = Vec::with_capacity(GCM_NONCE_LEN + sealed.len());
        envelope.extend_from_slice(nonce);
        envelope.extend_from_slice(&sealed);
        GO_STD_BASE64.encode(envelope)
    }

    /// Plain label text and the nonce (base64) it was sealed with.
    fn decrypt(&self, text: &str) -> Result<(String, String), DecryptError> {
        // Go's decoder skips line breaks.
        let cleaned: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let data = GO_STD_BASE64.decode(cleaned).map_err(|_| DecryptError::NotBase64)?;
        if data.len() <= GCM_NONCE_LEN {
            return Err(DecryptError::TooShort);
        }
        let (nonce, sealed) = data.split_at(GCM_NONCE_LEN);
        let opened = self.aead.decrypt(Nonce::from_slice(nonce), sealed).map_err(|_| DecryptError::Authentication)?;
        // The first encrypting releases of external-dns sealed the text without gzip.
        let plain = if opened.starts_with(&[0x1f, 0x8b]) { gunzip(&opened)? } else { opened };
        let plain = String::from_utf8(plain).map_err(|_| DecryptError::NotUtf8)?;
        Ok((plain, GO_STD_BASE64.encode(nonce)))
    }
}

/// Compresses like Go's `gzip.NewWriterLevel(BestCompression)` framing: no name, mtime 0,
/// OS 255. The deflate bytes differ from Go's, which no reader cares about; what matters is
/// that the same input always gives the same bytes.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing into a Vec cannot fail");
    enc.finish().expect("writing into a Vec cannot fail")
}

/// Reads every gzip member, as Go's reader does, up to a bound so that a hostile TXT value
/// cannot inflate into memory exhaustion.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(MAX_PLAINTEXT_LEN + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecryptError::Decompression)?;
    if out.len() as u64 > MAX_PLAINTEXT_LEN {
        return Err(DecryptError::Decompression);
    }
    Ok(out)
}

fn decode_nonce(encoded: &str) -> Option<[u8; GCM_NONCE_LEN]> {
    GO_STD_BASE64.decode(encoded).ok()?.try_into().ok()
}

fn random_nonce() -> [u8; GCM_NONCE_LEN] {
    let mut nonce = [0u8; GCM_NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "default";

    fn registry(prefix: &str, suffix: &str, wildcard: &str) -> TxtRegistry {
        TxtRegistry::new(TxtRegistryConfig {
            owner_id: OWNER.into(),
            prefix: prefix.into(),
            suffix: suffix.into(),
            wildcard_replacement: wildcard.into(),
            aes_key: None,
        })
        .expect("valid test config")
    }

    fn encrypted_registry(key: &[u8]) -> TxtRegistry {
        TxtRegistry::new(TxtRegistryConfig {
            owner_id: OWNER.into(),
            aes_key: Some(key.to_vec()),
            ..Default::default()
        })
        .expect("valid test config")
    }

    fn ep(name: &str, rt: RecordType, target: &str) -> Endpoint {
        Endpoint::new(name, rt, vec![target.to_string()])
    }

    fn txt(name: &str, content: &str) -> Endpoint {
        ep(name, RecordType::TXT, content)
    }

    fn owned(mut e: Endpoint, owner: &str, resource: &str) -> Endpoint {
        e.labels.insert(label::OWNER.into(), owner.into());
        e.labels.insert(label::RESOURCE.into(), resource.into());
        e
    }

    fn ownership_text(owner: &str, resource: &str) -> String {
        format!("heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}")
    }

    fn mapper(prefix: &str, suffix: &str) -> AffixNameMapper {
        AffixNameMapper::new(prefix, suffix, "")
    }

    /// A TXT of ours whose record is gone (its delete's answer was lost) goes; one whose
    /// record is about to be created, another owner's, one outside the provider's domains,
    /// one of a type the provider does not manage and the `cname-` TXT of an alias stay.
    #[test]
    fn orphaned_ownership_txts_of_ours_are_removed() {
        let reg = registry("", "", "");
        let raw = vec![
            txt("a-gone.example.com", &ownership_text(OWNER, "crd/ns/gone")),
            txt("a-theirs.example.com", &ownership_text("other", "crd/ns/theirs")),
            txt("a-soon.example.com", &ownership_text(OWNER, "crd/ns/soon")),
            txt("mx-mail.example.com", &ownership_text(OWNER, "crd/ns/mail")),
            txt("a-elsewhere.other.example.com", &ownership_text(OWNER, "crd/ns/x")),
            ep("live.example.com", RecordType::A, "192.0.2.1"),
            txt("a-live.example.com", &ownership_text(OWNER, "crd/ns/live")),
            txt("old.example.com", &ownership_text(OWNER, "crd/ns/old")),
        ];
        let view = reg.view_in_zone(raw, "example.com");
        let wanted = BTreeSet::from([ep("soon.example.com", RecordType::A, "192.0.2.2").key()]);
        let keep = |name: &str| !name.ends_with("other.example.com");
        let removed: Vec<String> = reg
            .orphaned_ownership(&view, &wanted, &[RecordType::A, RecordType::AAAA, RecordType::CNAME], keep)
            .into_iter()
            .map(|c| match c {
                Change::Delete(e) => e.dns_name,
                other => panic!("a removal is a delete here: {other:?}"),
            })
            .collect();
        assert_eq!(removed, vec!["a-gone.example.com".to_string(), "old.example.com".to_string()]);
    }

    #[test]
    fn reads_as_ownership_knows_plain_and_sealed_values() {
        let key = [7u8; 32];
        let reg = encrypted_registry(&key);
        let sealed = reg.ownership_record(&owned(ep("web.example.com", RecordType::A, "192.0.2.1"), OWNER, "r"));
        assert!(reg.reads_as_ownership(&sealed.targets[0]), "a copy of a sealed ownership value");
        assert!(reg.reads_as_ownership(&ownership_text("x", "y")));
        assert!(!reg.reads_as_ownership("v=spf1 -all"));
        assert!(!registry("", "", "").reads_as_ownership(&sealed.targets[0]), "without the key it is data");
    }

    #[test]
    fn new_format_names_for_every_type() {
        let m = mapper("", "");
        let cases = [
            (RecordType::A, "a-foo.example.org"),
            (RecordType::AAAA, "aaaa-foo.example.org"),
            (RecordType::CNAME, "cname-foo.example.org"),
            (RecordType::TXT, "txt-foo.example.org"),
            (RecordType::SRV, "srv-foo.example.org"),
            (RecordType::MX, "mx-foo.example.org"),
            (RecordType::NS, "ns-foo.example.org"),
            (RecordType::PTR, "ptr-foo.example.org"),
            (RecordType::CAA, "caa-foo.example.org"),
        ];
        for (rt, expected) in cases {
            assert_eq!(m.to_txt_name("foo.example.org", rt), expected);
            assert_eq!(
                m.to_endpoint_name(expected),
                Some(("foo.example.org".to_string(), TxtNameKind::New(rt))),
                "{expected}"
            );
        }
    }

    /// The literal cases of external-dns's `TestToEndpointNameNewTXT` (registry/txt_test.go),
    /// apex names included: external-dns puts the type in front of the first label even at
    /// the apex, so `example.com` gets `a-example.com`, outside its zone.
    #[test]
    fn affix_names_match_external_dns() {
        let cases = [
            ("foo", "", RecordType::A, "fooa-example.com"),
            ("", "foo", RecordType::AAAA, "aaaa-examplefoo.com"),
            ("foo-", "", RecordType::A, "foo-a-example.com"),
            ("", "-foo", RecordType::CNAME, "cname-example-foo.com"),
            ("foo.", "", RecordType::CNAME, "foo.cname-example.com"),
            ("", ".foo", RecordType::CNAME, "cname-example.foo.com"),
            ("foo.bar.", "", RecordType::CNAME, "foo.bar.cname-example.com"),
            ("", ".foo.bar.test", RecordType::CNAME, "cname-example.foo.bar.test.com"),
            ("%{record_type}-foo", "", RecordType::A, "a-fooexample.com"),
            ("", "foo-%{record_type}", RecordType::A, "examplefoo-a.com"),
            ("%{record_type}foo.", "", RecordType::CNAME, "cnamefoo.example.com"),
            ("", ".foo%{record_type}", RecordType::A, "example.fooa.com"),
            ("bar.%{record_type}.foo.", "", RecordType::CNAME, "bar.cname.foo.example.com"),
            ("", ".foo%{record_type}.bar", RecordType::A, "example.fooa.bar.com"),
            ("", "", RecordType::A, "a-example.com"),
            ("%{record_type}.", "", RecordType::A, "a.example.com"),
        ];
        for (prefix, suffix, rt, expected) in cases {
            let m = mapper(prefix, suffix);
            let name = m.to_txt_name("example.com", rt);
            assert_eq!(name, expected, "prefix {prefix:?} suffix {suffix:?}");
            assert_eq!(
                m.to_endpoint_name(&name),
                Some(("example.com".to_string(), TxtNameKind::New(rt))),
                "prefix {prefix:?} suffix {suffix:?}"
            );
        }
    }

    #[test]
    fn prefix_goes_before_the_name_and_suffix_after_the_first_label() {
        let p = mapper("txt.", "");
        assert_eq!(p.to_txt_name("api.prod.example.org", RecordType::A), "txt.a-api.prod.example.org");
        let s = mapper("", "-txt");
        assert_eq!(s.to_txt_name("api.prod.example.org", RecordType::A), "a-api-txt.prod.example.org");
        assert_eq!(
            s.to_endpoint_name("a-api-txt.prod.example.org"),
            Some(("api.prod.example.org".into(), TxtNameKind::New(RecordType::A)))
        );
        // Names are compared in lower case, as external-dns does.
        assert_eq!(
            p.to_endpoint_name("TXT.A-Api.Prod.Example.org").map(|(n, _)| n),
            Some("api.prod.example.org".into())
        );
        assert_eq!(p.to_endpoint_name("a-api.prod.example.org"), None, "prefix missing");
        assert_eq!(s.to_endpoint_name("a-api.prod.example.org"), None, "suffix missing");
    }

    #[test]
    fn single_label_names() {
        let m = mapper("", "");
        assert_eq!(m.to_txt_name("localhost", RecordType::A), "a-localhost");
        assert_eq!(m.to_endpoint_name("a-localhost"), Some(("localhost".into(), TxtNameKind::New(RecordType::A))));
        let s = mapper("", "-txt");
        assert_eq!(s.to_txt_name("localhost", RecordType::A), "a-localhost-txt");
        assert_eq!(s.to_endpoint_name("a-localhost-txt"), Some(("localhost".into(), TxtNameKind::New(RecordType::A))));
        assert_eq!(s.to_old_txt_name("localhost"), "localhost-txt");
        // A suffix spanning more labels than the name has cannot match.
        assert_eq!(mapper("", ".a.b").to_endpoint_name("x"), None);
    }

    #[test]
    fn wildcard_replacement_applies_to_a_leading_star_only() {
        let m = AffixNameMapper::new("", "", "WildCard");
        assert_eq!(m.to_txt_name("*.example.org", RecordType::A), "a-wildcard.example.org");
        assert_eq!(m.to_old_txt_name("*.example.org"), "wildcard.example.org");
        assert_eq!(m.to_txt_name("a.*.example.org", RecordType::A), "a-a.*.example.org");
        assert_eq!(
            m.to_endpoint_name("a-wildcard.example.org"),
            Some(("wildcard.example.org".into(), TxtNameKind::New(RecordType::A)))
        );
        assert_eq!(m.replace_wildcard("*.example.org"), "wildcard.example.org");
        // Without a replacement external-dns writes the star into the name.
        assert_eq!(mapper("", "").to_txt_name("*.example.org", RecordType::CNAME), "cname-*.example.org");
    }

    #[test]
    fn old_format_names_map_back_without_a_type() {
        let cases = [("", ""), ("txt.", ""), ("", "-txt"), ("%{record_type}-", ""), ("", ".%{record_type}")];
        for (prefix, suffix) in cases {
            let m = mapper(prefix, suffix);
            let old = m.to_old_txt_name("foo.example.org");
            assert_eq!(
                m.to_endpoint_name(&old),
                Some(("foo.example.org".into(), TxtNameKind::Old)),
                "{prefix:?} {suffix:?} -> {old}"
            );
        }
        assert_eq!(mapper("txt.", "").to_old_txt_name("foo.example.org"), "txt.foo.example.org");
        assert_eq!(mapper("%{record_type}-", "").to_old_txt_name("foo.example.org"), "-foo.example.org");
    }

    /// external-dns's `TestDropPrefix`, `TestDropSuffix` and `TestExtractRecordTypeDefaultPosition`.
    #[test]
    fn affix_dropping_matches_external_dns() {
        let p = mapper("foo-%{record_type}-", "");
        for name in ["foo-cname-test.example.com", "foo-a-test.example.com", "foo--test.example.com"] {
            assert_eq!(p.to_endpoint_name(name).map(|(n, _)| n), Some("test.example.com".into()), "{name}");
        }
        let s = mapper("", "-%{record_type}-foo");
        for name in ["test-a-foo.example.com", "test--foo.example.com"] {
            assert_eq!(s.to_endpoint_name(name).map(|(n, _)| n), Some("test.example.com".into()), "{name}");
        }
        assert_eq!(
            extract_type_default_position("ns-zone.example.com"),
            ("zone.example.com".into(), TxtNameKind::New(RecordType::NS))
        );
        assert_eq!(
            extract_type_default_position("aaaa-zone.example.com"),
            ("zone.example.com".into(), TxtNameKind::New(RecordType::AAAA))
        );
        assert_eq!(extract_type_default_position("zone.example.com"), ("zone.example.com".into(), TxtNameKind::Old));
        assert_eq!(
            extract_type_default_position("naptr-zone.example.com"),
            ("zone.example.com".into(), TxtNameKind::Foreign)
        );
    }

    #[test]
    fn labels_serialise_in_key_order_without_quotes() {
        let mut labels = Labels::new();
        labels.insert("resource".into(), "ingress/default/foo".into());
        labels.insert("owner".into(), "cluster-a".into());
        labels.insert(label::TXT_ENCRYPTION_NONCE.into(), "ignored".into());
        labels.insert("another".into(), "x".into());
        assert_eq!(
            serialize_labels(&labels),
            "heritage=external-dns,external-dns/another=x,external-dns/owner=cluster-a,external-dns/resource=ingress/default/foo"
        );
    }

    #[test]
    fn labels_parse_tolerantly() {
        let quoted = format!("\"{}\"", ownership_text("o", "ingress/ns/name"));
        let labels = parse_labels(&quoted).expect("ownership record");
        assert_eq!(labels.get("owner").map(String::as_str), Some("o"));
        assert_eq!(labels.get("resource").map(String::as_str), Some("ingress/ns/name"));
        assert_eq!(parse_labels(&ownership_text("o", "ingress/ns/name")), Some(labels.clone()), "quotes optional");

        let extra =
            parse_labels("heritage=external-dns,external-dns/owner=o,external-dns/future=1,junk,k=v=w,other/x=y")
                .expect("ownership record");
        assert_eq!(extra.get("future").map(String::as_str), Some("1"), "unknown labels are kept");
        assert_eq!(extra.len(), 2, "tokens without the external-dns prefix or not key=value are dropped: {extra:?}");

        assert_eq!(parse_labels("heritage=mate,external-dns/owner=o"), None, "foreign heritage");
        assert_eq!(parse_labels("external-dns/owner=o"), None, "no heritage");
        assert_eq!(parse_labels("v=spf1 include:_spf.example.com ~all"), None);
        assert_eq!(parse_labels(""), None);
        assert_eq!(parse_labels("heritage=external-dns"), Some(Labels::new()));
    }

    /// A zone as external-dns v0.13 leaves it: every record has a new-format TXT, every type but
    /// AAAA also the shared old-format TXT at the record's own name. Providers quote TXT
    /// values; some strip the quotes, some do not.
    fn zone_written_by_external_dns_v013() -> Vec<Endpoint> {
        let foo = ownership_text(OWNER, "ingress/default/foo");
        let bar = ownership_text(OWNER, "service/default/bar");
        vec![
            ep("foo.example.org", RecordType::CNAME, "lb.example.net"),
            txt("foo.example.org", &format!("\"{foo}\"")),
            txt("cname-foo.example.org", &format!("\"{foo}\"")),
            ep("bar.example.org", RecordType::A, "192.0.2.1"),
            ep("bar.example.org", RecordType::AAAA, "2001:db8::1"),
            txt("bar.example.org", &bar),
            txt("a-bar.example.org", &bar),
            txt("aaaa-bar.example.org", &bar),
            ep("other.example.org", RecordType::A, "192.0.2.9"),
            txt("other.example.org", &ownership_text("cluster-b", "ingress/x/other")),
            txt("a-other.example.org", &ownership_text("cluster-b", "ingress/x/other")),
            ep("example.org", RecordType::TXT, "v=spf1 -all"),
            ep("manual.example.org", RecordType::A, "192.0.2.7"),
        ]
    }

    fn find<'a>(eps: &'a [Endpoint], name: &str, rt: RecordType) -> &'a Endpoint {
        eps.iter()
            .find(|e| e.dns_name == name && e.record_type == rt)
            .unwrap_or_else(|| panic!("{name} {rt} missing from {eps:#?}"))
    }

    fn owner_of<'a>(eps: &'a [Endpoint], name: &str, rt: RecordType) -> Option<&'a str> {
        find(eps, name, rt).labels.get(label::OWNER).map(String::as_str)
    }

    #[test]
    fn view_of_an_external_dns_v013_zone() {
        let r = registry("", "", "");
        let view = r.view(zone_written_by_external_dns_v013());
        let eps = &view.endpoints;
        assert_eq!(eps.len(), 6, "ownership TXTs hidden, data kept: {eps:#?}");
        assert!(eps.iter().all(|e| e.record_type != RecordType::TXT || e.dns_name == "example.org"));

        let foo = find(eps, "foo.example.org", RecordType::CNAME);
        assert_eq!(foo.labels.get(label::OWNER).map(String::as_str), Some(OWNER));
        assert_eq!(foo.labels.get(label::RESOURCE).map(String::as_str), Some("ingress/default/foo"));
        assert_eq!(owner_of(eps, "bar.example.org", RecordType::A), Some(OWNER));
        assert_eq!(owner_of(eps, "bar.example.org", RecordType::AAAA), Some(OWNER));
        assert_eq!(owner_of(eps, "other.example.org", RecordType::A), Some("cluster-b"));
        assert_eq!(owner_of(eps, "example.org", RecordType::TXT), None, "SPF is user data");
        assert_eq!(owner_of(eps, "manual.example.org", RecordType::A), None);
        assert_eq!(view.ownership_records().count(), 7);
    }

    /// external-dns's default (no `--txt-wildcard-replacement`): the ownership TXT of
    /// `*.w.example.org` is at `a-*.w.example.org`, older releases' at the wildcard itself.
    #[test]
    fn wildcards_without_replacement_are_owned_like_external_dns_owns_them() {
        let r = registry("", "", "");
        let view = r.view(vec![
            ep("*.w.example.org", RecordType::A, "192.0.2.1"),
            txt("a-*.w.example.org", &ownership_text(OWNER, "crd/default/w")),
            ep("*.old.example.org", RecordType::CNAME, "lb.example.net"),
            txt("*.old.example.org", &ownership_text(OWNER, "crd/default/old")),
        ]);
        assert_eq!(view.endpoints.len(), 2, "{:#?}", view.endpoints);
        assert_eq!(owner_of(&view.endpoints, "*.w.example.org", RecordType::A), Some(OWNER));
        assert_eq!(owner_of(&view.endpoints, "*.old.example.org", RecordType::CNAME), Some(OWNER));
        let e = owned(ep("*.x.example.org", RecordType::AAAA, "2001:db8::1"), OWNER, "crd/default/x");
        assert_eq!(r.ownership_record(&e).dns_name, "aaaa-*.x.example.org");
        // The old-format-only wildcard gets its new-format TXT beside the old one.
        let cur = find(&view.endpoints, "*.old.example.org", RecordType::CNAME).clone();
        let out = r.expand(&view, &[Change::Update { old: cur.clone(), new: cur }]);
        let names: Vec<&str> = out.iter().map(|e| e.change.endpoint().dns_name.as_str()).collect();
        assert_eq!(names, vec!["*.old.example.org", "cname-*.old.example.org"]);
    }

    /// external-dns v0.18 to v0.21 on Route53: a CNAME to a load balancer is held as an A and
    /// an AAAA alias, owned through `cname-<name>` alone.
    #[test]
    fn route53_aliases_are_owned_through_their_cname_txt() {
        let r = registry("", "", "");
        let alias = |rt: RecordType| {
            let mut e = ep("lb.example.org", rt, "my-lb-1.eu-west-1.elb.amazonaws.com");
            e.provider_specific =
                vec![crate::endpoint::ProviderSpecificProperty { name: "alias".into(), value: "true".into() }];
            e
        };
        let view = r.view(vec![
            alias(RecordType::A),
            alias(RecordType::AAAA),
            txt("cname-lb.example.org", &ownership_text(OWNER, "service/default/lb")),
            // Not an alias: the cname- TXT says nothing about it.
            ep("plain.example.org", RecordType::A, "192.0.2.1"),
            txt("cname-plain.example.org", &ownership_text(OWNER, "service/default/plain")),
        ]);
        assert_eq!(owner_of(&view.endpoints, "lb.example.org", RecordType::A), Some(OWNER));
        assert_eq!(owner_of(&view.endpoints, "lb.example.org", RecordType::AAAA), Some(OWNER));
        assert_eq!(owner_of(&view.endpoints, "plain.example.org", RecordType::A), None);

        // Deleting one alias keeps the TXT the other still leans on; deleting both removes it once.
        let a = find(&view.endpoints, "lb.example.org", RecordType::A).clone();
        let aaaa = find(&view.endpoints, "lb.example.org", RecordType::AAAA).clone();
        let out = r.expand(&view, &[Change::Delete(a.clone())]);
        assert_eq!(out.len(), 1, "{out:#?}");
        let out = r.expand(&view, &[Change::Delete(a), Change::Delete(aaaa)]);
        let removals: Vec<(&str, &Role)> = out
            .iter()
            .filter(|e| e.role != Role::Data)
            .map(|e| (e.change.endpoint().dns_name.as_str(), &e.role))
            .collect();
        assert_eq!(removals, vec![("cname-lb.example.org", &Role::Ownership { backs: vec![0, 1] })]);
    }

    #[test]
    fn old_format_only_records_get_their_new_format_txt_and_nothing_else() {
        let r = registry("", "", "");
        let view = r.view(vec![
            ep("old.example.org", RecordType::A, "192.0.2.1").with_ttl(0),
            ep("old.example.org", RecordType::AAAA, "2001:db8::1"),
            txt("old.example.org", &ownership_text(OWNER, "crd/default/old")),
            ep("both.example.org", RecordType::A, "192.0.2.2"),
            txt("both.example.org", &ownership_text(OWNER, "crd/default/both")),
            txt("a-both.example.org", &ownership_text(OWNER, "crd/default/both")),
            ep("theirs.example.org", RecordType::A, "192.0.2.3"),
            txt("theirs.example.org", &ownership_text("other", "crd/default/theirs")),
        ]);
        let missing = r.missing_new_format(&view);
        let Change::Create(t) = &missing[..].first().cloned().expect("one TXT") else { panic!("{missing:?}") };
        assert_eq!(missing.len(), 1, "{missing:#?}");
        assert_eq!(t.dns_name, "a-old.example.org");
        assert_eq!(t.targets, vec![ownership_text(OWNER, "crd/default/old")]);
        assert_eq!(t.ttl, Some(0));
        // Once written, nothing more is missing.
        let mut raw: Vec<Endpoint> = view.endpoints.clone();
        raw.extend(view.ownership_records().cloned());
        raw.push(t.clone());
        for e in &mut raw {
            e.labels.clear();
        }
        assert_eq!(r.missing_new_format(&r.view(raw)), vec![]);
    }

    #[test]
    fn new_format_wins_over_old_format() {
        let r = registry("", "", "");
        let view = r.view(vec![
            ep("foo.example.org", RecordType::A, "192.0.2.1"),
            txt("foo.example.org", &ownership_text("old-owner", "ingress/a/old")),
            txt("a-foo.example.org", &ownership_text(OWNER, "ingress/a/new")),
        ]);
        assert_eq!(owner_of(&view.endpoints, "foo.example.org", RecordType::A), Some(OWNER));
        assert_eq!(view.endpoints[0].labels.get(label::RESOURCE).map(String::as_str), Some("ingress/a/new"));
    }

    #[test]
    fn view_of_an_old_format_only_zone() {
        let r = registry("", "", "");
        let view = r.view(vec![
            ep("foo.example.org", RecordType::CNAME, "lb.example.net"),
            txt("foo.example.org", &ownership_text(OWNER, "ingress/default/foo")),
            ep("bar.example.org", RecordType::A, "192.0.2.1"),
            ep("bar.example.org", RecordType::MX, "10 mail.example.org"),
            ep("bar.example.org", RecordType::AAAA, "2001:db8::1"),
            txt("bar.example.org", &ownership_text(OWNER, "service/default/bar")),
        ]);
        let eps = &view.endpoints;
        assert_eq!(eps.len(), 4);
        assert_eq!(owner_of(eps, "foo.example.org", RecordType::CNAME), Some(OWNER));
        assert_eq!(owner_of(eps, "bar.example.org", RecordType::A), Some(OWNER));
        assert_eq!(owner_of(eps, "bar.example.org", RecordType::MX), Some(OWNER));
        // external-dns never lets an AAAA record inherit an old-format TXT.
        assert_eq!(owner_of(eps, "bar.example.org", RecordType::AAAA), None);
    }

    /// At the apex of a zone the new-format name (`a-example.org` in zone `example.org`)
    /// falls outside the zone: the ownership TXT goes to the apex itself, once for every
    /// record there, AAAA included, and is deleted with the last of them.
    #[test]
    fn apex_records_are_owned_through_a_txt_at_the_apex() {
        let r = registry("", "", "");
        let a = owned(ep("example.org", RecordType::A, "k8s.elb.amazonaws.com"), OWNER, "service/default/web");
        let aaaa = owned(ep("example.org", RecordType::AAAA, "k8s.elb.amazonaws.com"), OWNER, "service/default/web");
        let empty = r.view_in_zone(Vec::new(), "example.org");
        let out = r.expand(&empty, &[Change::Create(a.clone()), Change::Create(aaaa.clone())]);
        let txts: Vec<(usize, &str)> = out
            .iter()
            .filter(|e| e.change.endpoint().record_type == RecordType::TXT)
            .map(|e| (e.index, e.change.endpoint().dns_name.as_str()))
            .collect();
        assert_eq!(txts, vec![(0, "example.org")], "one TXT at the apex, written once: {out:?}");
        let Change::Create(apex_txt) = &out[1].change else { panic!("{out:?}") };
        assert_eq!(apex_txt.targets, vec![ownership_text(OWNER, "service/default/web")]);

        // Read back, it owns both; a record below the apex keeps the new format.
        let raw = vec![
            ep("example.org", RecordType::A, "k8s.elb.amazonaws.com"),
            ep("example.org", RecordType::AAAA, "k8s.elb.amazonaws.com"),
            apex_txt.clone(),
        ];
        let view = r.view_in_zone(raw, "example.org");
        assert_eq!(owner_of(&view.endpoints, "example.org", RecordType::A), Some(OWNER));
        assert_eq!(owner_of(&view.endpoints, "example.org", RecordType::AAAA), Some(OWNER));
        let www = owned(ep("www.example.org", RecordType::A, "192.0.2.1"), OWNER, "service/default/www");
        let out = r.expand(&view, &[Change::Create(www)]);
        assert_eq!(out[1].change.endpoint().dns_name, "a-www.example.org");

        // No churn while the labels match; the TXT goes with the last record.
        assert_eq!(r.expand(&view, &[Change::Update { old: a.clone(), new: a.clone() }]).len(), 1);
        assert_eq!(r.expand(&view, &[Change::Delete(a.clone())]).len(), 1, "the AAAA still needs it");
        let out = r.expand(&view, &[Change::Delete(a), Change::Delete(aaaa)]);
        let deleted: Vec<&Change> =
            out.iter().map(|e| &e.change).filter(|c| c.endpoint().record_type == RecordType::TXT).collect();
        assert_eq!(deleted, vec![&Change::Delete(apex_txt.clone())]);
        let roles: Vec<&Role> = out.iter().map(|e| &e.role).filter(|r| **r != Role::Data).collect();
        assert_eq!(roles, vec![&Role::Ownership { backs: vec![0, 1] }], "removed only once both records are gone");
    }

    /// An apex TXT RRset holding SPF, a verification value, another owner's old-format value
    /// and ours: only the foreign data stays visible, unowned; our value decides the apex
    /// records' owner; our value alone is what changes.
    #[test]
    fn apex_txt_shared_with_other_values() {
        let r = registry("", "", "");
        let spf = "v=spf1 -all";
        let verification = "google-site-verification=abc";
        let theirs = ownership_text("cluster-b", "ingress/x/apex");
        let mine = ownership_text(OWNER, "service/default/apex");
        let shared = Endpoint::new(
            "example.org",
            RecordType::TXT,
            vec![spf.into(), verification.into(), theirs.clone(), mine.clone()],
        );
        let view = r.view_in_zone(vec![ep("example.org", RecordType::A, "192.0.2.1"), shared.clone()], "example.org");
        assert_eq!(view.endpoints.len(), 2, "{view:#?}");
        let data = find(&view.endpoints, "example.org", RecordType::TXT);
        assert_eq!(data.targets, vec![verification.to_string(), spf.to_string()]);
        assert!(data.labels.is_empty(), "nobody owns the SPF: {data:?}");
        assert_eq!(owner_of(&view.endpoints, "example.org", RecordType::A), Some(OWNER), "ours wins over theirs");
        assert_eq!(view.ownership_records().collect::<Vec<_>>(), vec![&shared]);

        let a = find(&view.endpoints, "example.org", RecordType::A).clone();
        let out = r.expand(&view, &[Change::Delete(a.clone())]);
        let mut kept = vec![spf.to_string(), verification.to_string(), theirs.clone()];
        kept.sort();
        assert_eq!(out[1].role, Role::Ownership { backs: vec![0] });
        assert_eq!(
            out[1].change,
            Change::Update { old: shared.clone(), new: Endpoint { targets: kept, ..shared.clone() } }
        );

        let mut moved = a.clone();
        moved.labels.insert(label::RESOURCE.into(), "service/default/moved".into());
        let out = r.expand(&view, &[Change::Update { old: a, new: moved }]);
        let Change::Update { old, new } = &out[1].change else { panic!("{out:?}") };
        assert_eq!(old, &shared);
        assert_eq!(new.targets.len(), 4);
        assert!(new.targets.contains(&ownership_text(OWNER, "service/default/moved")));
        assert!([spf, verification, theirs.as_str()].iter().all(|v| new.targets.contains(&v.to_string())));

        // No ownership value yet: ours joins the SPF.
        let spf_only = Endpoint::new("example.org", RecordType::TXT, vec![spf.into()]).with_ttl(3600);
        let view = r.view_in_zone(vec![spf_only.clone()], "example.org");
        let apex_a = owned(ep("example.org", RecordType::A, "192.0.2.1"), OWNER, "service/default/apex");
        let out = r.expand(&view, &[Change::Create(apex_a)]);
        let mut joined = vec![spf.to_string(), mine];
        joined.sort();
        assert_eq!(
            out[1].change,
            Change::Update { old: spf_only.clone(), new: Endpoint { targets: joined, ..spf_only } }
        );
    }

    #[test]
    fn view_with_prefix_wildcard_and_set_identifiers() {
        let r = registry("txt.", "", "wc");
        let mut weighted = ep("w.example.org", RecordType::A, "192.0.2.2");
        weighted.set_identifier = "eu".into();
        let mut weighted_txt = txt("txt.a-w.example.org", &ownership_text(OWNER, "ingress/a/w"));
        weighted_txt.set_identifier = "eu".into();
        let mut other_weighted = ep("w.example.org", RecordType::A, "192.0.2.3");
        other_weighted.set_identifier = "us".into();
        let view = r.view(vec![
            ep("*.example.org", RecordType::CNAME, "lb.example.net"),
            txt("txt.cname-wc.example.org", &ownership_text(OWNER, "ingress/a/wild")),
            weighted,
            weighted_txt,
            other_weighted,
            // Ownership text under a name this prefix does not produce: hidden, backs nothing.
            txt("foo.example.org", &ownership_text(OWNER, "ingress/a/foo")),
        ]);
        let eps = &view.endpoints;
        assert_eq!(eps.len(), 3, "{eps:#?}");
        assert_eq!(owner_of(eps, "*.example.org", RecordType::CNAME), Some(OWNER));
        let by_set = |s: &str| {
            eps.iter().find(|e| e.set_identifier == s).and_then(|e| e.labels.get(label::OWNER)).map(String::as_str)
        };
        assert_eq!(by_set("eu"), Some(OWNER));
        assert_eq!(by_set("us"), None);
    }

    #[test]
    fn txt_data_records_are_owned_through_txt_prefixed_names() {
        let r = registry("", "", "");
        let view = r.view(vec![
            ep("_acme.example.org", RecordType::TXT, "token"),
            txt("txt-_acme.example.org", &ownership_text(OWNER, "crd/ns/acme")),
        ]);
        assert_eq!(view.endpoints.len(), 1);
        assert_eq!(owner_of(&view.endpoints, "_acme.example.org", RecordType::TXT), Some(OWNER));
    }

    fn pairs(out: &[Expanded]) -> Vec<(usize, Change)> {
        out.iter().map(|e| (e.index, e.change.clone())).collect()
    }

    fn data_changes(out: &[Expanded]) -> Vec<(usize, &'static str, String, RecordType)> {
        out.iter()
            .map(|e| (e.index, e.change.verb(), e.change.endpoint().dns_name.clone(), e.change.endpoint().record_type))
            .collect()
    }

    #[test]
    fn ownership_record_carries_owner_resource_and_ttl() {
        let r = registry("", "", "");
        let mut e = owned(
            ep("foo.example.org", RecordType::A, "192.0.2.1").with_ttl(60),
            "someone-else",
            "ingress/default/foo",
        );
        e.provider_specific
            .push(crate::endpoint::ProviderSpecificProperty { name: "aws/weight".into(), value: "10".into() });
        e.set_identifier = "eu".into();
        let t = r.ownership_record(&e);
        assert_eq!(t.dns_name, "a-foo.example.org");
        assert_eq!(t.record_type, RecordType::TXT);
        assert_eq!(t.targets, vec![ownership_text(OWNER, "ingress/default/foo")]);
        assert_eq!(t.ttl, Some(60));
        assert_eq!(t.set_identifier, "eu");
        assert_eq!(t.provider_specific, e.provider_specific);
    }

    #[test]
    fn expand_create_adds_the_new_format_txt() {
        let r = registry("", "", "");
        let view = r.view(vec![]);
        let e = owned(ep("new.example.org", RecordType::CNAME, "lb.example.net"), OWNER, "ingress/default/new");
        let out = r.expand(&view, &[Change::Create(e.clone())]);
        assert_eq!(pairs(&out), vec![(0, Change::Create(e.clone())), (0, Change::Create(r.ownership_record(&e)))]);
        assert_eq!(out[1].change.endpoint().dns_name, "cname-new.example.org");
    }

    #[test]
    fn expand_create_over_a_leftover_txt() {
        let r = registry("", "", "");
        let view = r.view(vec![
            txt("a-mine.example.org", &ownership_text(OWNER, "ingress/default/mine")),
            txt("a-moved.example.org", &ownership_text(OWNER, "ingress/default/before")),
            txt("a-theirs.example.org", &ownership_text("cluster-b", "ingress/x/theirs")),
        ]);
        let mine = owned(ep("mine.example.org", RecordType::A, "192.0.2.1"), OWNER, "ingress/default/mine");
        let moved = owned(ep("moved.example.org", RecordType::A, "192.0.2.1"), OWNER, "ingress/default/after");
        let theirs = owned(ep("theirs.example.org", RecordType::A, "192.0.2.1"), OWNER, "ingress/default/theirs");
        assert_eq!(r.claim(&view, &theirs).and_then(|l| l.get(label::OWNER)).map(String::as_str), Some("cluster-b"));
        let out = r.expand(&view, &[Change::Create(mine), Change::Create(moved), Change::Create(theirs)]);
        assert_eq!(
            data_changes(&out),
            vec![
                (0, "create", "mine.example.org".into(), RecordType::A),
                (1, "create", "moved.example.org".into(), RecordType::A),
                (1, "update", "a-moved.example.org".into(), RecordType::TXT),
                (2, "create", "theirs.example.org".into(), RecordType::A),
            ]
        );
        let Change::Update { old, new } = &out[2].change else { panic!("expected update") };
        assert_eq!(old.targets, vec![ownership_text(OWNER, "ingress/default/before")]);
        assert_eq!(new.targets, vec![ownership_text(OWNER, "ingress/default/after")]);
    }

    #[test]
    fn expand_update_leaves_txt_alone_unless_missing_or_stale() {
        let r = registry("", "", "");
        let view = r.view(zone_written_by_external_dns_v013());
        let current = find(&view.endpoints, "foo.example.org", RecordType::CNAME).clone();
        let mut new = current.clone();
        new.targets = vec!["lb2.example.net".into()];
        let update = Change::Update { old: current.clone(), new: new.clone() };
        assert_eq!(pairs(&r.expand(&view, std::slice::from_ref(&update))), vec![(0, update)], "no TXT churn");

        let mut moved = new.clone();
        moved.labels.insert(label::RESOURCE.into(), "ingress/default/foo-v2".into());
        let out = r.expand(&view, &[Change::Update { old: current, new: moved }]);
        assert_eq!(data_changes(&out)[1], (0, "update", "cname-foo.example.org".into(), RecordType::TXT));
        let Change::Update { old, new } = &out[1].change else { panic!("expected update") };
        assert_eq!(
            old.targets,
            vec![format!("\"{}\"", ownership_text(OWNER, "ingress/default/foo"))],
            "old value as stored"
        );
        assert_eq!(new.targets, vec![ownership_text(OWNER, "ingress/default/foo-v2")]);
    }

    #[test]
    fn expand_update_migrates_an_old_format_only_record() {
        let r = registry("", "", "");
        let view = r.view(vec![
            ep("foo.example.org", RecordType::CNAME, "lb.example.net"),
            txt("foo.example.org", &ownership_text(OWNER, "ingress/default/foo")),
            ep("theirs.example.org", RecordType::CNAME, "lb.example.net"),
            txt("theirs.example.org", &ownership_text("cluster-b", "ingress/x/theirs")),
        ]);
        let current = find(&view.endpoints, "foo.example.org", RecordType::CNAME).clone();
        let mut new = current.clone();
        new.targets = vec!["lb2.example.net".into()];
        let out = r.expand(&view, &[Change::Update { old: current, new: new.clone() }]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].index, &out[1].change), (0, &Change::Create(r.ownership_record(&new))));
        assert_eq!(out[1].change.endpoint().dns_name, "cname-foo.example.org");

        let theirs = find(&view.endpoints, "theirs.example.org", RecordType::CNAME).clone();
        let out = r.expand(&view, &[Change::Update { old: theirs.clone(), new: theirs }]);
        assert_eq!(out.len(), 1, "another owner's old-format claim is not migrated to us");
    }

    #[test]
    fn expand_delete_removes_both_formats_as_stored() {
        let r = registry("", "", "");
        let view = r.view(zone_written_by_external_dns_v013());
        let foo = find(&view.endpoints, "foo.example.org", RecordType::CNAME).clone();
        let out = r.expand(&view, &[Change::Delete(foo)]);
        assert_eq!(
            data_changes(&out),
            vec![
                (0, "delete", "foo.example.org".into(), RecordType::CNAME),
                (0, "delete", "cname-foo.example.org".into(), RecordType::TXT),
                (0, "delete", "foo.example.org".into(), RecordType::TXT),
            ]
        );
        // Deletes match by value: the stored, quoted value is what goes out.
        assert!(out[1].change.endpoint().targets[0].starts_with('"'));

        let other = find(&view.endpoints, "other.example.org", RecordType::A).clone();
        assert_eq!(r.expand(&view, &[Change::Delete(other)]).len(), 1, "another owner's TXTs are never deleted");
    }

    #[test]
    fn expand_delete_keeps_a_shared_old_format_txt_while_needed() {
        let r = registry("", "", "");
        let old = ownership_text(OWNER, "service/default/bar");
        let view = r.view(vec![
            ep("bar.example.org", RecordType::A, "192.0.2.1"),
            ep("bar.example.org", RecordType::MX, "10 mail.example.org"),
            ep("bar.example.org", RecordType::AAAA, "2001:db8::1"),
            txt("bar.example.org", &old),
            txt("aaaa-bar.example.org", &old),
        ]);
        let a = find(&view.endpoints, "bar.example.org", RecordType::A).clone();
        let mx = find(&view.endpoints, "bar.example.org", RecordType::MX).clone();
        let aaaa = find(&view.endpoints, "bar.example.org", RecordType::AAAA).clone();

        let out = r.expand(&view, &[Change::Delete(a.clone())]);
        assert_eq!(out.len(), 1, "MX still owned through the old-format TXT: {out:#?}");

        let out = r.expand(&view, &[Change::Delete(aaaa.clone())]);
        assert_eq!(data_changes(&out)[1], (0, "delete", "aaaa-bar.example.org".into(), RecordType::TXT));
        assert_eq!(out.len(), 2, "the AAAA never depended on the old-format TXT");

        let out = r.expand(&view, &[Change::Delete(a), Change::Delete(mx), Change::Delete(aaaa)]);
        assert_eq!(
            data_changes(&out),
            vec![
                (0, "delete", "bar.example.org".into(), RecordType::A),
                (0, "delete", "bar.example.org".into(), RecordType::TXT),
                (1, "delete", "bar.example.org".into(), RecordType::MX),
                (2, "delete", "bar.example.org".into(), RecordType::AAAA),
                (2, "delete", "aaaa-bar.example.org".into(), RecordType::TXT),
            ]
        );

        // Once the MX has its own new-format TXT it no longer needs the old one.
        let mut zone = vec![
            ep("bar.example.org", RecordType::A, "192.0.2.1"),
            ep("bar.example.org", RecordType::MX, "10 mail.example.org"),
            txt("bar.example.org", &old),
            txt("mx-bar.example.org", &old),
        ];
        let view = r.view(std::mem::take(&mut zone));
        let a = find(&view.endpoints, "bar.example.org", RecordType::A).clone();
        let out = r.expand(&view, &[Change::Delete(a)]);
        assert_eq!(data_changes(&out)[1], (0, "delete", "bar.example.org".into(), RecordType::TXT));
    }

    #[test]
    fn registry_config_is_validated() {
        let base = TxtRegistryConfig { owner_id: "o".into(), ..Default::default() };
        let err = |cfg: TxtRegistryConfig| TxtRegistry::new(cfg).expect_err("invalid config");
        assert_eq!(err(TxtRegistryConfig { owner_id: String::new(), ..base.clone() }), RegistryError::EmptyOwnerId);
        assert!(matches!(
            err(TxtRegistryConfig { owner_id: "a,b".into(), ..base.clone() }),
            RegistryError::InvalidOwnerId(_)
        ));
        let both = err(TxtRegistryConfig { prefix: "p".into(), suffix: "s".into(), ..base.clone() });
        assert!(both.to_string().starts_with("TXT registry prefix"), "{both}");
        let short = err(TxtRegistryConfig { aes_key: Some(b"too short".to_vec()), ..base.clone() });
        assert_eq!(
            short.to_string(),
            "TXT encryption key: must be 32 bytes, or the standard base64 encoding of 32 bytes; got 9 bytes"
        );
        // external-dns's TestNewTXTRegistryEncryptionConfig: 49 bytes that are not base64 of 32.
        assert!(TxtRegistry::new(TxtRegistryConfig {
            aes_key: Some(b"123456789012345678901234567890asdfasdfasdfasdfa12".to_vec()),
            ..base.clone()
        })
        .is_err());
        assert!(
            TxtRegistry::new(TxtRegistryConfig { aes_key: Some(Vec::new()), ..base.clone() }).is_err(),
            "an empty key is a mistake, not 'no encryption'"
        );
        assert!(TxtRegistry::new(TxtRegistryConfig {
            aes_key: Some(b"passphrasewhichneedstobe32bytes!".to_vec()),
            ..base
        })
        .is_ok());
    }

    /// external-dns's `TestNewTXTRegistryEncryptionConfig`: a 44-character key is base64.
    #[test]
    fn base64_key_decodes_like_external_dns() {
        let key = GO_STD_BASE64.decode("ZPitL0NGVQBZbTD6DwXJzD8RiStSazzYXQsdUowLURY=").expect("valid base64");
        assert_eq!(
            key,
            [
                100, 248, 173, 47, 67, 70, 85, 0, 89, 109, 48, 250, 15, 5, 201, 204, 63, 17, 137, 43, 82, 107, 60, 216,
                93, 11, 29, 82, 140, 11, 81, 22
            ]
        );
        let from_b64 = encrypted_registry(b"ZPitL0NGVQBZbTD6DwXJzD8RiStSazzYXQsdUowLURY=");
        let from_raw = encrypted_registry(&key);
        let e = owned(ep("foo.example.org", RecordType::A, "192.0.2.1"), OWNER, "r");
        let sealed = from_b64.ownership_record(&e).targets[0].clone();
        assert!(from_raw.parse_txt(&sealed).is_some(), "both spellings are the same key");
    }

    /// The literal vector of external-dns's `endpoint/crypto_test.go` `TestEncrypt`.
    #[test]
    fn decrypts_external_dns_literal_vector() {
        let cipher = LabelCipher::new(b"s%zF`.*'5`9.AhI2!B,.~hmbs^.*TL?;").expect("32-byte key");
        let sealed = "0Mfzf6wsN8llrfX0ucDZ6nlc2+QiQfKKedjPPLu5atb2I35L9nUZeJcCnuLVW7CVW3K0h94vSuBLdXnMrj8Vcm0M09shxaoF48IcCpD03XtQbKXqk2hPbsW6+JybvplHIQGr16/PcjUSObGmR9yjf38+qEltApkKvrPjsyw43BX4eE10rL0Bln33UJD7/w+zazRDPFlAcbGtkt0ETKHnvyB3/aCddLipvrhjCXj2ZY/ktRF6h716kJRgXU10dCIQHFYU45MIdxI+k10HK3yZqhI2V0Gp2xjrFV/LRQ7/OS9SFee4asPWUYxbCEsnOzp8qc0dCPFSo1dtADzWnUZnsAcbnjtudT4milfLJc5CxDk1v3ykqQ/ajejwHjWQ7b8U6AsTErbezfdcqrb5IzkLgHb5TosnfrdDmNc9GcKfpsrCHbVY8KgNwMVdtwavLv7d9WM6sooUlZ3t0sABGkzagXQmPRvwLnkSOlie5XrnzWo8/8/4UByLga29CaXO";
        let (plain, nonce) = cipher.decrypt(sealed).expect("external-dns vector decrypts");
        assert!(
            plain.starts_with("Lorem Ipsum is simply dummy text of the printing and typesetting industry."),
            "{plain}"
        );
        assert!(plain.ends_with("desktop publishing software like Aldus PageMaker including versions of Lorem Ipsum."));
        assert!(sealed.starts_with(&nonce), "12 nonce bytes are exactly 16 base64 characters");

        let wrong = LabelCipher::new(b"s'J!jD`].LC?g&Oa11AgTub,j48ts/96").expect("32-byte key");
        assert_eq!(wrong.decrypt(sealed), Err(DecryptError::Authentication));
    }

    /// Builds external-dns's envelope independently of `LabelCipher`, the way Go's
    /// `EncryptText` does: gzip, `gcm.Seal(nonce, nonce, data, nil)`, base64-std.
    fn seal_like_external_dns(key: &[u8; 32], nonce: [u8; 12], text: &str) -> String {
        let aead = Aes256Gcm::new_from_slice(key).expect("32-byte key");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(text.as_bytes()).expect("vec write");
        let compressed = gz.finish().expect("vec write");
        let mut out = nonce.to_vec();
        out.extend(aead.encrypt(Nonce::from_slice(&nonce), compressed.as_slice()).expect("seal"));
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn view_reads_an_external_dns_encrypted_zone() {
        let key = *b"passphrasewhichneedstobe32bytes!";
        let nonce = [7u8; 12];
        let sealed = seal_like_external_dns(&key, nonce, &ownership_text(OWNER, "ingress/default/foo"));
        let r = encrypted_registry(&key);
        let view = r.view(vec![
            ep("foo.example.org", RecordType::A, "192.0.2.1"),
            txt("a-foo.example.org", &format!("\"{sealed}\"")),
            // Written before encryption was switched on: still ours.
            ep("plain.example.org", RecordType::A, "192.0.2.2"),
            txt("a-plain.example.org", &ownership_text(OWNER, "ingress/default/plain")),
        ]);
        assert_eq!(view.endpoints.len(), 2);
        let foo = find(&view.endpoints, "foo.example.org", RecordType::A);
        assert_eq!(foo.labels.get(label::OWNER).map(String::as_str), Some(OWNER));
        assert_eq!(foo.labels.get(label::RESOURCE).map(String::as_str), Some("ingress/default/foo"));
        assert_eq!(foo.labels.get(label::TXT_ENCRYPTION_NONCE).map(String::as_str), Some("BwcHBwcHBwcHBwcH"));
        assert_eq!(owner_of(&view.endpoints, "plain.example.org", RecordType::A), Some(OWNER));

        // Re-emitting the unchanged record reuses the nonce, so the bytes are identical to
        // what we sealed the way external-dns does.
        assert_eq!(r.ownership_record(foo).targets, vec![sealed]);
    }

    #[test]
    fn encryption_round_trip_and_nonce_reuse() {
        let r = encrypted_registry(b"01234567890123456789012345678901");
        let e = owned(ep("foo.example.org", RecordType::CNAME, "lb.example.net"), OWNER, "ingress/default/foo");
        let first = r.ownership_record(&e);
        let value = &first.targets[0];
        assert!(!value.contains("heritage"), "sealed: {value}");
        let labels = r.parse_txt(value).expect("our own value decrypts");
        assert_eq!(labels.get(label::RESOURCE).map(String::as_str), Some("ingress/default/foo"));
        let nonce = labels.get(label::TXT_ENCRYPTION_NONCE).cloned().expect("nonce label");
        assert_eq!(nonce.len(), 16);

        assert_ne!(r.ownership_record(&e).targets, first.targets, "no nonce label: a fresh nonce each time");
        let mut read_back = e.clone();
        read_back.labels.insert(label::TXT_ENCRYPTION_NONCE.into(), nonce);
        assert_eq!(r.ownership_record(&read_back).targets, first.targets);
        assert_eq!(r.ownership_record(&read_back).targets, first.targets);

        // An unusable nonce label is ignored, never trusted or fatal.
        read_back.labels.insert(label::TXT_ENCRYPTION_NONCE.into(), "not base64!".into());
        assert!(r.parse_txt(&r.ownership_record(&read_back).targets[0]).is_some());
    }

    #[test]
    fn undecryptable_txt_is_not_ours() {
        let theirs = encrypted_registry(b"s'J!jD`].LC?g&Oa11AgTub,j48ts/96");
        let ours = encrypted_registry(b"s%zF`.*'5`9.AhI2!B,.~hmbs^.*TL?;");
        let e = owned(ep("foo.example.org", RecordType::A, "192.0.2.1"), OWNER, "r");
        let sealed = theirs.ownership_record(&e);
        let view = ours.view(vec![e.clone(), sealed.clone()]);
        assert_eq!(view.endpoints.len(), 2, "kept as data: {view:#?}");
        assert_eq!(owner_of(&view.endpoints, "a-foo.example.org", RecordType::TXT), None);
        assert_eq!(view.ownership_records().count(), 0);

        for garbage in ["", "\"\"", "AAAA", "QUJD", "!!!!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(ours.parse_txt(garbage), None, "{garbage:?}");
        }
        // Sealed fine but not gzip and not label text.
        let not_labels = seal_like_external_dns(b"s%zF`.*'5`9.AhI2!B,.~hmbs^.*TL?;", [1; 12], "hello");
        assert_eq!(ours.parse_txt(&not_labels), None);
    }

    #[test]
    fn encrypted_update_keeps_bytes_when_nothing_changed() {
        let r = encrypted_registry(b"01234567890123456789012345678901");
        let e = owned(ep("foo.example.org", RecordType::A, "192.0.2.1"), OWNER, "ingress/default/foo");
        let zone = vec![e.clone(), r.ownership_record(&e)];
        let view = r.view(zone);
        let current = view.endpoints[0].clone();
        let mut new = current.clone();
        new.targets = vec!["192.0.2.2".into()];
        let out = r.expand(&view, &[Change::Update { old: current.clone(), new: new.clone() }]);
        assert_eq!(out.len(), 1);

        // A changed label gets a fresh nonce: sealing new text under a used nonce leaks.
        new.labels.insert(label::RESOURCE.into(), "ingress/default/bar".into());
        let out = r.expand(&view, &[Change::Update { old: current, new }]);
        let Change::Update { old, new } = &out[1].change else { panic!("expected TXT update") };
        let old_nonce = r.parse_txt(&old.targets[0]).and_then(|l| l.get(label::TXT_ENCRYPTION_NONCE).cloned());
        let new_labels = r.parse_txt(&new.targets[0]).expect("decrypts");
        assert_eq!(new_labels.get(label::RESOURCE).map(String::as_str), Some("ingress/default/bar"));
        assert_ne!(new_labels.get(label::TXT_ENCRYPTION_NONCE), old_nonce.as_ref());
    }

    #[test]
    fn encrypted_values_written_without_gzip_still_decrypt() {
        let key = *b"01234567890123456789012345678901";
        let aead = Aes256Gcm::new_from_slice(&key).expect("key");
        let nonce = [3u8; 12];
        let mut raw = nonce.to_vec();
        raw.extend(aead.encrypt(Nonce::from_slice(&nonce), ownership_text(OWNER, "r").as_bytes()).expect("seal"));
        let r = encrypted_registry(&key);
        let labels = r.parse_txt(&GO_STD_BASE64.encode(raw)).expect("ownership record");
        assert_eq!(labels.get(label::OWNER).map(String::as_str), Some(OWNER));
    }
}
