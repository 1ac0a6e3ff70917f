//! `etcd://HOST:PORT[,HOST:PORT…][/NAMESPACE]`: where a store lives in etcd.

use std::fmt;

/// The endpoints of an etcd cluster and the key namespace tormr uses in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAddress {
    /// `host:port` of each member; the client may use any of them.
    pub endpoints: Vec<String>,
    /// Prepended to every key; ends with `/`.
    pub namespace: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0}; expected etcd://HOST:PORT[,HOST:PORT…][/NAMESPACE], e.g. etcd://127.0.0.1:2379/tormr"
)]
pub struct ParseError(String);

impl EtcdAddress {
    pub const DEFAULT_NAMESPACE: &'static str = "tormr/";

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let rest = text
            .strip_prefix("etcd://")
            .ok_or_else(|| ParseError(format!("{text:?} does not start with etcd://")))?;
        let (hosts, namespace) = match rest.split_once('/') {
            Some((hosts, ns)) => (hosts, ns.trim_matches('/')),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| ParseError(format!("{host:?} has no :PORT")))?;
            if name.is_empty() || port.parse::<u16>().is_err() {
                return Err(ParseError(format!("{host:?} is not HOST:PORT")));
            }
            endpoints.push(host.to_owned());
        }
        if namespace
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ParseError(format!(
                "namespace {namespace:?} may not hold spaces or control characters"
            )));
        }
        let namespace = if namespace.is_empty() {
            Self::DEFAULT_NAMESPACE.to_owned()
        } else {
            format!("{namespace}/")
        };
        Ok(EtcdAddress {
            endpoints,
            namespace,
        })
    }
}

impl fmt::Display for EtcdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "etcd://{}/{}",
            self.endpoints.join(","),
            self.namespace.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints_and_namespace() {
        let a = EtcdAddress::parse("etcd://127.0.0.1:2379,10.0.0.2:2379/boards/main").unwrap();
        assert_eq!(a.endpoints, ["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(a.namespace, "boards/main/");
        assert_eq!(
            a.to_string(),
            "etcd://127.0.0.1:2379,10.0.0.2:2379/boards/main"
        );
        let d = EtcdAddress::parse("etcd://localhost:2379").unwrap();
        assert_eq!(d.namespace, "tormr/");
    }

    #[test]
    fn refuses_what_is_not_an_etcd_address() {
        for bad in [
            "http://127.0.0.1:2379",
            "etcd://",
            "etcd://host",
            "etcd://host:notaport",
            "etcd://:2379",
            "etcd://h:1,h2/ns",
            "etcd://h:1/name space",
        ] {
            assert!(EtcdAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
