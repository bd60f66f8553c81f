//! One view of "the backend block" of a provider spec.
//!
//! The spec keeps one optional field per backend, because that is the YAML users write
//! (`route53: {...}`), and the schema cannot say "exactly one of these". Everything that needs
//! to know which backend a provider uses (the backend builder, the tenancy rules, the
//! workers, the Secret index) matches on [`BackendRef`] instead of on the fields, so a new
//! backend is one field, one variant and the arms the compiler then asks for.

use super::dnsprovider::{
    AzureSpec, CloudflareSpec, EmbeddedSpec, GoogleSpec, InMemorySpec, PowerDnsSpec, ProviderSpec, Rfc2136Spec,
    Route53Spec, WebhookSpec,
};

/// The backend block of a provider spec, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendRef<'a> {
    InMemory(&'a InMemorySpec),
    Embedded(&'a EmbeddedSpec),
    Rfc2136(&'a Rfc2136Spec),
    Route53(&'a Route53Spec),
    Cloudflare(&'a CloudflareSpec),
    Google(&'a GoogleSpec),
    PowerDns(&'a PowerDnsSpec),
    Webhook(&'a WebhookSpec),
    Azure(&'a AzureSpec),
    AzurePrivateDns(&'a AzureSpec),
}

/// The spec fields that name a backend, as users write them.
pub const BACKEND_FIELDS: &[&str] = &[
    "inMemory",
    "embedded",
    "rfc2136",
    "route53",
    "cloudflare",
    "google",
    "powerdns",
    "webhook",
    "azure",
    "azurePrivateDns",
];

/// A spec sets no backend block, or more than one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec: set exactly one backend block ({}), found {}", BACKEND_FIELDS.join(", "), .0.len())]
pub struct BackendCount(pub Vec<&'static str>);

impl ProviderSpec {
    /// Every backend block the spec sets, in [`BACKEND_FIELDS`] order. A valid spec has one;
    /// the tenancy rules look at all of them, so a second block cannot slip past them.
    pub fn backends(&self) -> Vec<BackendRef<'_>> {
        let blocks = [
            self.in_memory.as_ref().map(BackendRef::InMemory),
            self.embedded.as_ref().map(BackendRef::Embedded),
            self.rfc2136.as_ref().map(BackendRef::Rfc2136),
            self.route53.as_ref().map(BackendRef::Route53),
            self.cloudflare.as_ref().map(BackendRef::Cloudflare),
            self.google.as_ref().map(BackendRef::Google),
            self.powerdns.as_ref().map(BackendRef::PowerDns),
            self.webhook.as_ref().map(BackendRef::Webhook),
            self.azure.as_ref().map(BackendRef::Azure),
            self.azure_private_dns.as_ref().map(BackendRef::AzurePrivateDns),
        ];
        blocks.into_iter().flatten().collect()
    }

    /// The one backend block of the spec.
    pub fn backend(&self) -> Result<BackendRef<'_>, BackendCount> {
        match self.backends().as_slice() {
            [one] => Ok(*one),
            many => Err(BackendCount(many.iter().map(|b| b.field()).collect())),
        }
    }
}

impl<'a> BackendRef<'a> {
    /// The spec field of this block, e.g. "route53".
    pub fn field(&self) -> &'static str {
        match self {
            BackendRef::InMemory(_) => "inMemory",
            BackendRef::Embedded(_) => "embedded",
            BackendRef::Rfc2136(_) => "rfc2136",
            BackendRef::Route53(_) => "route53",
            BackendRef::Cloudflare(_) => "cloudflare",
            BackendRef::Google(_) => "google",
            BackendRef::PowerDns(_) => "powerdns",
            BackendRef::Webhook(_) => "webhook",
            BackendRef::Azure(_) => "azure",
            BackendRef::AzurePrivateDns(_) => "azurePrivateDns",
        }
    }

    /// Whether the records live in the operator itself: nothing is listed remotely, so the
    /// worker's cache is the truth and no resync is needed.
    pub fn is_local(&self) -> bool {
        matches!(self, BackendRef::InMemory(_) | BackendRef::Embedded(_))
    }

    /// Names of the Secrets (in the provider's Secret namespace) that building this backend
    /// reads: a change to any of them rebuilds it.
    pub fn secret_names(&self) -> Vec<&'a str> {
        match self {
            BackendRef::InMemory(_) | BackendRef::Embedded(_) | BackendRef::Webhook(_) => vec![],
            BackendRef::Rfc2136(r) => r.tsig.iter().map(|t| t.secret_ref.name.as_str()).collect(),
            BackendRef::Route53(r) => r.credentials.iter().map(|c| c.secret_ref.name.as_str()).collect(),
            BackendRef::Cloudflare(c) => vec![c.api_token.secret_ref.name.as_str()],
            BackendRef::Google(g) => g.credentials.iter().map(|c| c.secret_ref.name.as_str()).collect(),
            BackendRef::PowerDns(p) => std::iter::once(p.api_key_secret_ref.name.as_str())
                .chain(p.tls.iter().flat_map(|t| t.ca_secret_ref.iter()).map(|r| r.name.as_str()))
                .collect(),
            BackendRef::Azure(a) | BackendRef::AzurePrivateDns(a) => {
                let creds = a.credentials.iter();
                creds
                    .clone()
                    .flat_map(|c| c.secret_ref.iter().map(|r| r.name.as_str()))
                    .chain(creds.flat_map(|c| c.azure_config_secret_ref.iter().map(|r| r.name.as_str())))
                    .chain(a.tls.iter().flat_map(|t| t.ca_secret_ref.iter()).map(|r| r.name.as_str()))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dnsprovider::{HttpTlsSpec, SecretKeyRef};

    fn key(name: &str) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: "k".into() }
    }

    #[test]
    fn exactly_one_block_is_the_backend() {
        let none = ProviderSpec::default();
        let err = none.backend().unwrap_err();
        assert_eq!(err.0, Vec::<&str>::new());
        assert!(err.to_string().starts_with("spec: set exactly one backend block (inMemory, embedded,"), "{err}");
        assert!(err.to_string().ends_with("found 0"), "{err}");

        let one = ProviderSpec { in_memory: Some(InMemorySpec { zones: vec!["a.test".into()] }), ..Default::default() };
        assert!(matches!(one.backend(), Ok(BackendRef::InMemory(m)) if m.zones == ["a.test"]));
        assert!(one.backend().unwrap().is_local());

        let two = ProviderSpec {
            embedded: Some(EmbeddedSpec::default()),
            webhook: Some(WebhookSpec::default()),
            ..Default::default()
        };
        assert_eq!(two.backend().unwrap_err().0, vec!["embedded", "webhook"]);
        assert_eq!(two.backends().len(), 2);
    }

    #[test]
    fn azure_reads_its_credential_and_ca_secrets() {
        use crate::crd::dnsprovider::{AzureCredentials, AzureSecretRef, AzureSpec};
        let a = AzureSpec {
            credentials: Some(AzureCredentials {
                secret_ref: Some(AzureSecretRef { name: "sp".into(), ..Default::default() }),
                azure_config_secret_ref: Some(key("azure-json")),
            }),
            tls: Some(HttpTlsSpec { ca_secret_ref: Some(key("ca")) }),
            ..Default::default()
        };
        assert_eq!(BackendRef::Azure(&a).secret_names(), vec!["sp", "azure-json", "ca"]);
        assert!(BackendRef::AzurePrivateDns(&AzureSpec::default()).secret_names().is_empty());
    }

    #[test]
    fn the_field_list_names_every_variant() {
        let all = ProviderSpec {
            in_memory: Some(Default::default()),
            embedded: Some(Default::default()),
            rfc2136: Some(Default::default()),
            route53: Some(Default::default()),
            cloudflare: Some(Default::default()),
            google: Some(Default::default()),
            powerdns: Some(Default::default()),
            webhook: Some(Default::default()),
            azure: Some(Default::default()),
            azure_private_dns: Some(Default::default()),
            ..Default::default()
        };
        let fields: Vec<_> = all.backends().iter().map(|b| b.field()).collect();
        assert_eq!(fields, BACKEND_FIELDS);
        // The YAML names: every field of the list is a key the spec serializes.
        let json = serde_json::to_value(&all).unwrap();
        for f in BACKEND_FIELDS {
            assert!(json.get(f).is_some(), "{f} is not a spec key");
        }
    }

    #[test]
    fn secret_names_cover_every_secret_a_backend_reads() {
        let pdns = PowerDnsSpec {
            api_key_secret_ref: key("pdns-key"),
            tls: Some(HttpTlsSpec { ca_secret_ref: Some(key("pdns-ca")) }),
            ..Default::default()
        };
        assert_eq!(BackendRef::PowerDns(&pdns).secret_names(), vec!["pdns-key", "pdns-ca"]);
        assert!(BackendRef::Route53(&Route53Spec::default()).secret_names().is_empty());
        assert!(BackendRef::Webhook(&WebhookSpec::default()).secret_names().is_empty());
    }
}
