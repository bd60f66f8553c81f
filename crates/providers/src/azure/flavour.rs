//! What differs between Azure DNS and Azure Private DNS, as data: the ARM resource type, the
//! api-version, the list path, and the JSON keys of the record arrays. The record items
//! themselves (`{"ipv4Address": …}`, `{"preference", "exchange"}`, …) are the same in both APIs.

use extdns_core::endpoint::RecordType;

/// Which of the two Azure DNS APIs a provider talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Azure DNS (public zones), `Microsoft.Network/dnszones`.
    Public,
    /// Azure Private DNS, `Microsoft.Network/privateDnsZones`.
    Private,
}

/// Where a record type's values sit in `properties` of a record set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordField {
    pub key: &'static str,
    /// CNAME is one object (`cnameRecord`), the other types an array of items.
    pub single: bool,
}

impl Flavour {
    /// The user-facing name, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Flavour::Public => "Azure DNS",
            Flavour::Private => "Azure Private DNS",
        }
    }

    /// The api-version extdns sends: the one external-dns's SDK clients use (azure-mgmt-dns
    /// 2018-05-01; Private DNS 2020-06-01, whose record set shape is 2018-09-01's).
    pub fn api_version(self) -> &'static str {
        match self {
            Flavour::Public => "2018-05-01",
            Flavour::Private => "2020-06-01",
        }
    }

    /// The resource type segment of zone ids and URLs. The service answers ids with
    /// `dnszones` in lower case (external-dns parses them so), whatever the docs' examples say.
    pub fn zones_segment(self) -> &'static str {
        match self {
            Flavour::Public => "dnszones",
            Flavour::Private => "privateDnsZones",
        }
    }

    /// The path below a zone that lists every record set (`RecordSets_ListByDnsZone`,
    /// `RecordSets_List` of Private DNS).
    pub fn list_segment(self) -> &'static str {
        match self {
            Flavour::Public => "recordsets",
            Flavour::Private => "ALL",
        }
    }

    /// `properties` key of the TTL.
    pub fn ttl_key(self) -> &'static str {
        match self {
            Flavour::Public => "TTL",
            Flavour::Private => "ttl",
        }
    }

    /// The `properties` key of `rt`'s values, `None` for a type this API cannot hold
    /// (Private DNS has no NS or CAA record sets).
    pub fn field(self, rt: RecordType) -> Option<RecordField> {
        let array = |key| Some(RecordField { key, single: false });
        match (self, rt) {
            (_, RecordType::CNAME) => Some(RecordField {
                key: if self == Flavour::Public { "CNAMERecord" } else { "cnameRecord" },
                single: true,
            }),
            (Flavour::Public, RecordType::A) => array("ARecords"),
            (Flavour::Public, RecordType::AAAA) => array("AAAARecords"),
            (Flavour::Public, RecordType::MX) => array("MXRecords"),
            (Flavour::Public, RecordType::NS) => array("NSRecords"),
            (Flavour::Public, RecordType::PTR) => array("PTRRecords"),
            (Flavour::Public, RecordType::SRV) => array("SRVRecords"),
            (Flavour::Public, RecordType::TXT) => array("TXTRecords"),
            (Flavour::Public, RecordType::CAA) => array("caaRecords"),
            (Flavour::Private, RecordType::A) => array("aRecords"),
            (Flavour::Private, RecordType::AAAA) => array("aaaaRecords"),
            (Flavour::Private, RecordType::MX) => array("mxRecords"),
            (Flavour::Private, RecordType::PTR) => array("ptrRecords"),
            (Flavour::Private, RecordType::SRV) => array("srvRecords"),
            (Flavour::Private, RecordType::TXT) => array("txtRecords"),
            (Flavour::Private, RecordType::NS | RecordType::CAA) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dns_lacks_ns_and_caa_and_spells_keys_in_camel_case() {
        assert_eq!(Flavour::Public.field(RecordType::A).map(|f| f.key), Some("ARecords"));
        assert_eq!(Flavour::Private.field(RecordType::A).map(|f| f.key), Some("aRecords"));
        assert!(Flavour::Private.field(RecordType::NS).is_none());
        assert!(Flavour::Private.field(RecordType::CAA).is_none());
        assert_eq!(Flavour::Public.field(RecordType::CAA).map(|f| f.key), Some("caaRecords"));
        assert!(Flavour::Public.field(RecordType::CNAME).is_some_and(|f| f.single));
        assert_eq!((Flavour::Public.ttl_key(), Flavour::Private.ttl_key()), ("TTL", "ttl"));
    }
}
