//! Names between extdns's text form and the DNS wire, for the providers that speak DNS.
//!
//! hickory's parser only takes host names (`*` alone as a wildcard label), but zones hold
//! other names too: external-dns writes the ownership TXT of `*.w.example.org` at
//! `a-*.w.example.org`, a legal owner name on the wire (RFC 2181 §11: any octets) that BIND,
//! Knot and PowerDNS store and serve. Both directions must therefore accept a `*` inside a
//! label, and the listing must give it back as `*`, not as hickory's escaped `\*`, so that the
//! registry recognises the name.

use hickory_proto::rr::Name;

/// The absolute wire name of `s`. Host-name syntax as hickory parses it, and additionally
/// labels made of letters, digits, `-`, `_` and `*` (where a `*` is not the whole label):
/// what external-dns's TXT names for wildcards need, and nothing a resolver would misread.
pub(crate) fn to_wire(s: &str) -> Result<Name, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Ok(Name::root());
    }
    let strict = Name::from_ascii(trimmed).map(|mut n| {
        n.set_fqdn(true);
        n
    });
    let err = match strict {
        Ok(n) => return Ok(n),
        Err(e) => format!("{trimmed:?} is not a valid DNS name: {e}"),
    };
    let labels: Vec<&str> = trimmed.trim_end_matches('.').split('.').collect();
    let starred = labels.iter().any(|l| l.len() > 1 && l.contains('*'));
    let legal = |l: &&str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_*".contains(&b))
    };
    if !starred || !labels.iter().all(legal) {
        return Err(err);
    }
    Name::from_labels(labels.iter().map(|l| l.as_bytes()))
        .map_err(|e| format!("{trimmed:?} is not a valid DNS name: {e}"))
}

/// Lower-case text form of a wire name without the final dot, `*` unescaped wherever it is
/// (the form [`to_wire`] reads back). Octets that cannot stand in a name's text (dots inside a
/// label, `\`, spaces, non-printable) keep their `\DDD` escape, so such a name never aliases
/// another one.
pub(crate) fn to_text(name: &Name) -> String {
    let mut out = String::new();
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            let b = b.to_ascii_lowercase();
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_dns_wildcard_txt_names_reach_the_wire_and_come_back() {
        for name in ["a-*.w.example.org", "aaaa-*.w.example.org", "cname-*.example.org", "*.w.example.org"] {
            let wire = to_wire(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(wire.is_fqdn());
            assert_eq!(to_text(&wire), name);
        }
        // Exactly the labels external-dns's miekg/dns would send.
        let wire = to_wire("a-*.w.example.org").unwrap();
        assert_eq!(wire.iter().next(), Some(&b"a-*"[..]));
    }

    #[test]
    fn other_malformed_names_stay_refused_with_the_name() {
        for bad in
            ["a b.example.org", "a..example.org", "a-*.w/x.example.org", &format!("{}*.example.org", "x".repeat(63))]
        {
            let err = to_wire(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn text_form_is_lower_case_and_escapes_what_cannot_be_text() {
        let name = Name::from_labels(vec![&b"A.b"[..], &b"Example"[..], &b"org"[..]]).unwrap();
        assert_eq!(to_text(&name), "a\\046b.example.org");
        assert_eq!(to_text(&Name::from_ascii("WWW.Example.org.").unwrap()), "www.example.org");
    }
}
