//! What TCP sockets a process holds, read from /proc: the proof that a tormr
//! process in Tor mode talks only to Tor relays and listens on nothing but the
//! owner's loopback status page.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// The kernel's TCP state (0x01 established, 0x0A listen, …).
    pub state: u8,
}

pub const ESTABLISHED: u8 = 0x01;
pub const LISTEN: u8 = 0x0A;

fn inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

fn parse_v4(hex: &str) -> Option<SocketAddrV4> {
    let (ip, port) = hex.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::from(ip.swap_bytes()),
        u16::from_str_radix(port, 16).ok()?,
    ))
}

/// The IPv4 and IPv6 TCP sockets `pid` holds open.
pub fn tcp_sockets(pid: u32) -> Vec<Socket> {
    let mine = inodes(pid);
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !f[9].parse::<u64>().is_ok_and(|i| mine.contains(&i)) {
                continue;
            }
            let state = u8::from_str_radix(f[3], 16).unwrap_or(0);
            match (parse_v4(f[1]), parse_v4(f[2])) {
                (Some(local), Some(remote)) => out.push(Socket {
                    local,
                    remote,
                    state,
                }),
                // Any IPv6 socket is a violation in itself: record it unparsed.
                _ => out.push(Socket {
                    local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    state: 0xFF,
                }),
            }
        }
    }
    out
}

/// What is wrong with `pid`'s sockets: anything but connections to the
/// testnet's ORPorts, and listening anywhere but `allowed_listen`.
pub fn violations(pid: u32, or_ports: &[u16], allowed_listen: &[u16]) -> Vec<String> {
    tcp_sockets(pid)
        .into_iter()
        .filter_map(|s| match s.state {
            LISTEN if s.local.ip().is_loopback() && allowed_listen.contains(&s.local.port()) => {
                None
            }
            LISTEN => Some(format!("listens on {}", s.local)),
            ESTABLISHED if s.remote.ip().is_loopback() && or_ports.contains(&s.remote.port()) => {
                None
            }
            0xFF => Some("holds an IPv6 socket".to_string()),
            // Closing states towards relays are fine; anything else is not.
            _ if or_ports.contains(&s.remote.port()) => None,
            _ => Some(format!(
                "has a connection {} → {} (state {:#x})",
                s.local, s.remote, s.state
            )),
        })
        .collect()
}

/// Whether `pid` has at least one established connection to a relay.
pub fn talks_to_relays(pid: u32, or_ports: &[u16]) -> bool {
    tcp_sockets(pid)
        .iter()
        .any(|s| s.state == ESTABLISHED && or_ports.contains(&s.remote.port()))
}
