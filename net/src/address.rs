//! Service addresses: `127.0.0.1:PORT` on loopback, `NAME.onion[:PORT]` over Tor.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a service listens. Displayed in full only on purpose: logs use
/// [`Address::redacted`], because a job's onion address is a secret of its owner
/// and its matched workers.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a service address (expected HOST:PORT or NAME.onion[:PORT])")]
pub struct BadAddress(pub String);

impl Address {
    /// Parses `host:port` or `name.onion[:port]`, with or without `http://`/`tor://`.
    pub fn parse(text: &str) -> Result<Self, BadAddress> {
        let bad = || BadAddress(text.chars().take(100).collect());
        let t = text.trim();
        let t = t
            .strip_prefix("http://")
            .or_else(|| t.strip_prefix("tor://"))
            .or_else(|| t.strip_prefix("tcp://"))
            .unwrap_or(t);
        let t = t.trim_end_matches('/');
        if t.is_empty()
            || t.len() > 255
            || t.contains('/')
            || t.contains('@')
            || t.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        let (host, port) = match t.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (t, None),
        };
        if let Some(p) = port
            && p.parse::<u16>().map_or(true, |p| p == 0)
        {
            return Err(bad());
        }
        if host.is_empty() {
            return Err(bad());
        }
        let onion = host.ends_with(".onion");
        if !onion && port.is_none() {
            return Err(bad());
        }
        Ok(Address(if onion && port.is_none() {
            format!("{host}:80")
        } else {
            t.to_owned()
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_onion(&self) -> bool {
        self.host().ends_with(".onion")
    }

    pub fn host(&self) -> &str {
        self.0.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.0)
    }

    pub fn port(&self) -> u16 {
        self.0
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(80)
    }

    /// The form safe for logs: loopback addresses in full, onion addresses cut
    /// to their first 6 characters.
    pub fn redacted(&self) -> String {
        if self.is_onion() {
            format!("{}….onion", self.host().chars().take(6).collect::<String>())
        } else {
            self.0.clone()
        }
    }

    /// `http://ADDRESS` for building request URIs.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.redacted())
    }
}

impl std::str::FromStr for Address {
    type Err = BadAddress;
    fn from_str(s: &str) -> Result<Self, BadAddress> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let a = Address::parse("127.0.0.1:8080").unwrap();
        assert_eq!(
            (a.host(), a.port(), a.is_onion()),
            ("127.0.0.1", 8080, false)
        );
        let onion = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";
        let o = Address::parse(&format!("tor://{onion}")).unwrap();
        assert_eq!(o.port(), 80);
        assert!(o.is_onion());
        assert!(!o.redacted().contains("klmnop"));
        assert!(!format!("{o:?}").contains("klmnop"));
        for bad in [
            "",
            "nohostport",
            "a:0",
            "a:99999",
            "a/b:1",
            "user@h:1",
            ":80",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
