//! Builds an Azure DNS or Azure Private DNS backend from its spec: the credential from a
//! Secret (client id, secret, tenant id), from external-dns's azure.json in a Secret, or from
//! the operator's own identity (workload identity, managed identity) where tenancy allows it.

use serde::Deserialize;

use super::backend::{read_ca_bundle, read_secret, read_secret_text, BackendError, BuildContext};
use super::tenancy::{Refusal, Refused, FLAG_AMBIENT};
use crate::crd::dnsprovider::{parse_duration, AzureSpec, SecretKeyRef};
use crate::dns::providers::azure::{
    AzureConfig, AzureProvider, Credential, Flavour, DEFAULT_AUTHORITY_HOST, DEFAULT_RESOURCE_MANAGER, IMDS_TOKEN_URL,
};

/// external-dns's azure.json (the fields extdns reads; others are ignored).
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AzureJson {
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub subscription_id: String,
    #[serde(default)]
    pub resource_group: String,
    #[serde(default)]
    pub aad_client_id: String,
    #[serde(default)]
    pub aad_client_secret: String,
    #[serde(default)]
    pub use_managed_identity_extension: bool,
    #[serde(default)]
    pub use_workload_identity_extension: bool,
    #[serde(default, rename = "userAssignedIdentityID")]
    pub user_assigned_identity_id: String,
}

/// What Azure Workload Identity's mutating webhook puts into the operator's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AmbientEnv {
    pub federated_token_file: Option<String>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub authority_host: Option<String>,
}

impl AmbientEnv {
    /// Read once per backend build, in the operator's process.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        AmbientEnv {
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE"),
            client_id: var("AZURE_CLIENT_ID"),
            tenant_id: var("AZURE_TENANT_ID"),
            authority_host: var("AZURE_AUTHORITY_HOST"),
        }
    }
}

/// A credential and, for workload identity, the authority host its webhook names.
#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    pub credential: Credential,
    pub authority_host: Option<String>,
    /// Whether this is the operator's own identity (tenancy's "ambient credentials").
    pub ambient: bool,
}

/// The operator's own identity: workload identity when its webhook set the environment up,
/// else the node's managed identity (`user_assigned` picks a user-assigned one).
pub fn ambient_credential(
    env: &AmbientEnv,
    client_id: Option<&str>,
    tenant_id: Option<&str>,
    user_assigned: Option<&str>,
) -> Chosen {
    let client = client_id.map(str::to_string).or_else(|| env.client_id.clone());
    let tenant = tenant_id.map(str::to_string).or_else(|| env.tenant_id.clone());
    if let (Some(file), Some(client_id), Some(tenant_id)) = (&env.federated_token_file, client, tenant) {
        return Chosen {
            credential: Credential::WorkloadIdentity { tenant_id, client_id, token_file: file.into() },
            authority_host: env.authority_host.clone(),
            ambient: true,
        };
    }
    Chosen {
        credential: Credential::ManagedIdentity {
            client_id: user_assigned.map(str::to_string),
            endpoint: IMDS_TOKEN_URL.into(),
        },
        authority_host: None,
        ambient: true,
    }
}

/// The credential an azure.json describes, as external-dns reads it: workload identity, then
/// managed identity, then the client secret.
pub fn credential_of_azure_json(json: &AzureJson, env: &AmbientEnv) -> Result<Chosen, String> {
    fn some(s: &str) -> Option<&str> {
        Some(s.trim()).filter(|s| !s.is_empty())
    }
    if json.use_workload_identity_extension {
        if env.federated_token_file.is_none() {
            return Err("useWorkloadIdentityExtension is set but the operator has no AZURE_FEDERATED_TOKEN_FILE (is Azure Workload Identity set up for its service account?)".into());
        }
        let chosen = ambient_credential(env, some(&json.aad_client_id), some(&json.tenant_id), None);
        return match chosen.credential {
            Credential::WorkloadIdentity { .. } => Ok(chosen),
            _ => Err("useWorkloadIdentityExtension is set but neither azure.json nor AZURE_CLIENT_ID and AZURE_TENANT_ID name the client and tenant".into()),
        };
    }
    if json.use_managed_identity_extension {
        let env = AmbientEnv::default();
        return Ok(ambient_credential(&env, None, None, some(&json.user_assigned_identity_id)));
    }
    match (some(&json.tenant_id), some(&json.aad_client_id), some(&json.aad_client_secret)) {
        (Some(t), Some(c), Some(s)) => Ok(Chosen {
            credential: Credential::ClientSecret { tenant_id: t.into(), client_id: c.into(), client_secret: s.into() },
            authority_host: None,
            ambient: false,
        }),
        _ => Err("set tenantId, aadClientId and aadClientSecret, or useManagedIdentityExtension or useWorkloadIdentityExtension".into()),
    }
}

/// The ARM endpoint and authority host of an azure.json `cloud`.
pub fn cloud_endpoints(cloud: &str) -> Result<(&'static str, &'static str), String> {
    match cloud.trim().to_ascii_lowercase().as_str() {
        "" | "azurepubliccloud" => Ok((DEFAULT_RESOURCE_MANAGER, DEFAULT_AUTHORITY_HOST)),
        "azureusgovernmentcloud" => Ok(("https://management.usgovcloudapi.net", "https://login.microsoftonline.us")),
        "azurechinacloud" => Ok(("https://management.chinacloudapi.cn", "https://login.chinacloudapi.cn")),
        other => Err(format!("cloud {other:?} is not AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud")),
    }
}

/// Builds the provider of `spec.azure` (`flavour` Public) or `spec.azurePrivateDns`.
pub async fn azure_provider(
    flavour: Flavour,
    a: &AzureSpec,
    ctx: &BuildContext<'_>,
) -> Result<AzureProvider, BackendError> {
    let prefix = match flavour {
        Flavour::Public => "spec.azure",
        Flavour::Private => "spec.azurePrivateDns",
    };
    let field = |f: &str, message: String| BackendError::Field { field: format!("{prefix}.{f}"), message };
    let env = AmbientEnv::from_process();
    let (chosen, json) = match &a.credentials {
        None => {
            (ambient_credential(&env, None, None, a.user_assigned_identity_client_id.as_deref()), AzureJson::default())
        }
        Some(c) => match (&c.secret_ref, &c.azure_config_secret_ref) {
            (Some(r), None) => {
                let key = |k: &Option<String>, default: &str| SecretKeyRef {
                    name: r.name.clone(),
                    key: k.clone().unwrap_or_else(|| default.to_string()),
                };
                let what = format!("{prefix}.credentials.secretRef");
                let client_id =
                    read_secret_text(ctx.client, ctx.secret_ns, &key(&r.client_id_key, "client-id"), &what).await?;
                let client_secret =
                    read_secret_text(ctx.client, ctx.secret_ns, &key(&r.client_secret_key, "client-secret"), &what)
                        .await?;
                let tenant_id =
                    read_secret_text(ctx.client, ctx.secret_ns, &key(&r.tenant_id_key, "tenant-id"), &what).await?;
                let credential = Credential::ClientSecret { tenant_id, client_id, client_secret };
                (Chosen { credential, authority_host: None, ambient: false }, AzureJson::default())
            }
            (None, Some(r)) => {
                let raw = read_secret(ctx.client, ctx.secret_ns, r).await?;
                let json: AzureJson = serde_json::from_slice(&raw).map_err(|e| {
                    field("credentials.azureConfigSecretRef", format!("the key is not an azure.json file: {e}"))
                })?;
                let chosen =
                    credential_of_azure_json(&json, &env).map_err(|m| field("credentials.azureConfigSecretRef", m))?;
                (chosen, json)
            }
            _ => {
                return Err(field("credentials", "set exactly one of secretRef and azureConfigSecretRef".into()));
            }
        },
    };
    if chosen.ambient && !ctx.ambient_allowed {
        // The spec alone passed the tenancy rules; the Secret's azure.json asks for more.
        return Err(BackendError::Refused(Refused::NotPermitted(Refusal {
            field: match flavour {
                Flavour::Public => "spec.azure.credentials.azureConfigSecretRef",
                Flavour::Private => "spec.azurePrivateDns.credentials.azureConfigSecretRef",
            },
            what: "an azure.json asking for the operator's own Azure identity (useManagedIdentityExtension, useWorkloadIdentityExtension)",
            flag: FLAG_AMBIENT,
        })));
    }
    let subscription =
        a.subscription_id.clone().or_else(|| Some(json.subscription_id.clone()).filter(|s| !s.is_empty())).ok_or_else(
            || {
                field(
                    "subscriptionId",
                    "required (or subscriptionId in the azure.json of credentials.azureConfigSecretRef)".into(),
                )
            },
        )?;
    let mut cfg = AzureConfig::new(flavour, subscription, chosen.credential);
    let (arm, authority) = cloud_endpoints(&json.cloud).map_err(|m| field("credentials.azureConfigSecretRef", m))?;
    cfg.resource_manager = a.resource_manager_url.clone().unwrap_or_else(|| arm.to_string());
    cfg.authority_host =
        a.authority_host_url.clone().or(chosen.authority_host).unwrap_or_else(|| authority.to_string());
    cfg.resource_group =
        a.resource_group.clone().or_else(|| Some(json.resource_group.clone()).filter(|s| !s.is_empty()));
    cfg.zones = a.zones.clone();
    cfg.ca_bundle = read_ca_bundle(ctx.client, ctx.secret_ns, a.tls.as_ref()).await?;
    if let Some(n) = a.max_attempts {
        cfg.max_attempts = n;
    }
    if let Some(t) = &a.timeout {
        cfg.timeout = parse_duration(&format!("{prefix}.timeout"), t).map_err(|m| field("timeout", m))?;
    }
    cfg.default_ttl = ctx.default_ttl;
    AzureProvider::new(cfg).map_err(|e| BackendError::Start(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(file: bool) -> AmbientEnv {
        AmbientEnv {
            federated_token_file: file.then(|| "/var/run/secrets/azure/tokens/azure-identity-token".into()),
            client_id: Some("env-client".into()),
            tenant_id: Some("env-tenant".into()),
            authority_host: Some("https://login.microsoftonline.com/".into()),
        }
    }

    #[test]
    fn azure_json_of_external_dns_gives_the_credential_it_describes() {
        let secret: AzureJson = serde_json::from_str(
            r#"{"tenantId": "t", "subscriptionId": "s", "resourceGroup": "rg", "aadClientId": "c", "aadClientSecret": "x"}"#,
        )
        .unwrap();
        let chosen = credential_of_azure_json(&secret, &env(true)).unwrap();
        assert_eq!(
            chosen.credential,
            Credential::ClientSecret { tenant_id: "t".into(), client_id: "c".into(), client_secret: "x".into() }
        );
        assert!(!chosen.ambient);

        let mi: AzureJson = serde_json::from_str(
            r#"{"tenantId": "t", "subscriptionId": "s", "useManagedIdentityExtension": true, "userAssignedIdentityID": "uai"}"#,
        )
        .unwrap();
        let chosen = credential_of_azure_json(&mi, &env(true)).unwrap();
        assert_eq!(
            chosen.credential,
            Credential::ManagedIdentity { client_id: Some("uai".into()), endpoint: IMDS_TOKEN_URL.into() }
        );
        assert!(chosen.ambient);

        let wi: AzureJson =
            serde_json::from_str(r#"{"tenantId": "t", "aadClientId": "c", "useWorkloadIdentityExtension": true}"#)
                .unwrap();
        let chosen = credential_of_azure_json(&wi, &env(true)).unwrap();
        assert!(
            matches!(&chosen.credential, Credential::WorkloadIdentity { tenant_id, client_id, .. } if tenant_id == "t" && client_id == "c")
        );
        assert!(credential_of_azure_json(&wi, &env(false)).unwrap_err().contains("AZURE_FEDERATED_TOKEN_FILE"));

        let incomplete: AzureJson = serde_json::from_str(r#"{"tenantId": "t", "aadClientId": "c"}"#).unwrap();
        assert!(credential_of_azure_json(&incomplete, &env(false)).unwrap_err().contains("aadClientSecret"));
    }

    #[test]
    fn ambient_identity_is_workload_identity_when_set_up_else_imds() {
        let wi = ambient_credential(&env(true), None, None, None);
        assert!(
            matches!(&wi.credential, Credential::WorkloadIdentity { client_id, tenant_id, .. } if client_id == "env-client" && tenant_id == "env-tenant")
        );
        assert_eq!(wi.authority_host.as_deref(), Some("https://login.microsoftonline.com/"));
        let mi = ambient_credential(&env(false), None, None, Some("uai"));
        assert_eq!(
            mi.credential,
            Credential::ManagedIdentity { client_id: Some("uai".into()), endpoint: IMDS_TOKEN_URL.into() }
        );
        assert!(wi.ambient && mi.ambient);
    }

    #[test]
    fn sovereign_clouds_have_their_own_endpoints() {
        assert_eq!(cloud_endpoints("").unwrap(), (DEFAULT_RESOURCE_MANAGER, DEFAULT_AUTHORITY_HOST));
        assert_eq!(cloud_endpoints("AzureUSGovernmentCloud").unwrap().0, "https://management.usgovcloudapi.net");
        assert!(cloud_endpoints("AzureGermanCloud").is_err());
    }
}
