//! external-dns's `--domain-filter` / `--exclude-domains` semantics.

use crate::endpoint::normalize_name;

/// Include/exclude suffix lists. An empty include list admits every name. A filter entry
/// starting with a dot (".example.com") matches only names below it, not the apex.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

fn normalize_filter(f: &str) -> String {
    let f = f.trim();
    let leading_dot = f.starts_with('.');
    let n = normalize_name(f.trim_start_matches('.'));
    if leading_dot {
        format!(".{n}")
    } else {
        n
    }
}

fn matches_one(filter: &str, name: &str) -> bool {
    if let Some(sub) = filter.strip_prefix('.') {
        return name.ends_with(&format!(".{sub}"));
    }
    name == filter || name.ends_with(&format!(".{filter}"))
}

impl DomainFilter {
    pub fn new<I: IntoIterator<Item = S>, J: IntoIterator<Item = S>, S: AsRef<str>>(include: I, exclude: J) -> Self {
        DomainFilter {
            include: include.into_iter().map(|s| normalize_filter(s.as_ref())).filter(|s| !s.is_empty()).collect(),
            exclude: exclude.into_iter().map(|s| normalize_filter(s.as_ref())).filter(|s| !s.is_empty()).collect(),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        let name = normalize_name(name);
        (self.include.is_empty() || self.include.iter().any(|f| matches_one(f, &name)))
            && !self.exclude.iter().any(|f| matches_one(f, &name))
    }

    /// Length of the longest include entry matching `name`; 0 when the filter has no include
    /// list; `None` when the name is not admitted. Used to pick the most specific provider.
    pub fn match_len(&self, name: &str) -> Option<usize> {
        if !self.matches(name) {
            return None;
        }
        let name = normalize_name(name);
        Some(
            self.include
                .iter()
                .filter(|f| matches_one(f, &name))
                .map(|f| f.trim_start_matches('.').len())
                .max()
                .unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude() {
        let f = DomainFilter::new(["example.com."], ["internal.example.com"]);
        assert!(f.matches("example.com"));
        assert!(f.matches("API.example.com."));
        assert!(!f.matches("badexample.com"));
        assert!(!f.matches("x.internal.example.com"));
        assert!(DomainFilter::default().matches("anything.org"));
        let sub = DomainFilter::new([".example.com"], Vec::<&str>::new());
        assert!(!sub.matches("example.com"));
        assert!(sub.matches("a.example.com"));
    }

    #[test]
    fn most_specific_match() {
        let f = DomainFilter::new(["example.com", "dev.example.com"], Vec::<&str>::new());
        assert_eq!(f.match_len("a.dev.example.com"), Some(15));
        assert_eq!(f.match_len("a.example.com"), Some(11));
        assert_eq!(f.match_len("a.example.org"), None);
        assert_eq!(DomainFilter::default().match_len("x.org"), Some(0));
    }
}
