//! A private Tor network on 127.0.0.1, from Debian's `tor` binary.
//!
//! Three directory authorities (also relays), five relays and two exits, all
//! flagged Guard and HSDir, with the fast voting schedule of
//! `TestingTorNetwork`. `up` generates keys, writes a torrc per node, starts
//! them, waits until a consensus lists the relays, and writes `arti.toml`,
//! which every tormr command takes with `--tor-config` to use this network
//! instead of the real one. `down` stops exactly the processes `up` started.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the testnet could not be brought up, inspected or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    #[error(
        "`{program}` was not found; install Tor from your distribution (Debian/Ubuntu: apt-get install tor)"
    )]
    MissingTor { program: &'static str },
    #[error("{what} failed: {why}")]
    Command { what: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the testnet in {dir} is not up (no testnet.json); run `tormr testnet up --dir {dir}`")]
    NotUp { dir: String },
    #[error("a testnet is already running in {dir}; run `tormr testnet down --dir {dir}` first")]
    AlreadyUp { dir: String },
    #[error(
        "the testnet did not produce a usable consensus within {secs} s; see the notice.log files under {dir}"
    )]
    NoConsensus { secs: u64, dir: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TestnetError + '_ {
    move |source| TestnetError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Authority,
    Relay,
    Exit,
}

/// One tor process of the network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub nickname: String,
    pub role: Role,
    pub or_port: u16,
    pub dir_port: Option<u16>,
    /// RSA identity fingerprint (hex).
    pub rsa_fingerprint: String,
    /// ed25519 identity (unpadded base64).
    pub ed_identity: String,
    /// v3 authority identity (authorities only).
    pub v3ident: Option<String>,
    pub pid: Option<u32>,
}

/// What `up` wrote to `DIR/testnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Testnet {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
}

const AUTHORITIES: usize = 3;
const RELAYS: usize = 5;
const EXITS: usize = 2;

fn state_path(dir: &Path) -> PathBuf {
    dir.join("testnet.json")
}

/// Where `up` writes the arti configuration.
pub fn arti_config_path(dir: &Path) -> PathBuf {
    dir.join("arti.toml")
}

fn require(program: &'static str) -> Result<(), TestnetError> {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(_) => Err(TestnetError::MissingTor { program }),
    }
}

/// Free loopback ports, kept bound until all are chosen so none repeats.
fn free_ports(n: usize) -> Result<Vec<u16>, TestnetError> {
    let mut held = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").map_err(io_err(Path::new("127.0.0.1:0")))?;
        held.push(l);
    }
    held.iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(io_err(Path::new("127.0.0.1")))
        })
        .collect()
}

fn run(what: &str, cmd: &mut Command, stdin: &[u8]) -> Result<String, TestnetError> {
    let fail = |why: String| TestnetError::Command {
        what: what.to_owned(),
        why,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates a node's identity keys and reads back its fingerprints.
fn identity(
    data_dir: &Path,
    nickname: &str,
    or_port: u16,
) -> Result<(String, String), TestnetError> {
    let list = |kind: &str| -> Result<String, TestnetError> {
        let out = run(
            &format!("tor --list-fingerprint {kind} for {nickname}"),
            Command::new("tor")
                .arg("--list-fingerprint")
                .arg(kind)
                .arg("--DataDirectory")
                .arg(data_dir)
                .args(["--ORPort", &or_port.to_string(), "--Nickname", nickname])
                // A placeholder authority keeps tor from consulting the real network's.
                .args([
                    "--DirAuthority",
                    "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff",
                ]),
            b"",
        )?;
        // The last line is "NICKNAME FINGERPRINT".
        let line = out
            .lines()
            .rev()
            .find(|l| l.starts_with(nickname))
            .unwrap_or("")
            .to_owned();
        Ok(line.split_whitespace().skip(1).collect::<Vec<_>>().join(""))
    };
    let rsa = list("rsa")?;
    let ed = list("ed25519")?;
    if rsa.len() != 40 || ed.is_empty() {
        return Err(TestnetError::Command {
            what: format!("reading {nickname}'s fingerprints"),
            why: format!("got {rsa:?} and {ed:?}"),
        });
    }
    Ok((rsa, ed))
}

/// Makes an authority's v3 keys; returns its v3 identity.
fn authority_keys(data_dir: &Path, dir_port: u16) -> Result<String, TestnetError> {
    let keys = data_dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(io_err(&keys))?;
    run(
        "tor-gencert",
        Command::new("tor-gencert")
            .args([
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-m",
                "12",
                "-a",
                &format!("127.0.0.1:{dir_port}"),
            ])
            .arg("-i")
            .arg(keys.join("authority_identity_key"))
            .arg("-s")
            .arg(keys.join("authority_signing_key"))
            .arg("-c")
            .arg(keys.join("authority_certificate")),
        b"\n",
    )?;
    let cert_path = keys.join("authority_certificate");
    let cert = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
    cert.lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .map(|f| f.trim().to_owned())
        .ok_or_else(|| TestnetError::Command {
            what: "tor-gencert".into(),
            why: "no fingerprint in the certificate".into(),
        })
}

fn torrc(node: &Node, dir: &Path, authorities: &[Node], owner: Option<u32>) -> String {
    let data = dir.join(&node.nickname);
    let mut t = format!(
        "TestingTorNetwork 1\nDataDirectory {data}\nPidFile {data}/tor.pid\nLog notice file {data}/notice.log\n\
         Nickname {nick}\nContactInfo tormr-testnet\nRunAsDaemon 1\nSafeLogging 0\nShutdownWaitLength 0\n\
         SocksPort 0\nAddress 127.0.0.1\nORPort 127.0.0.1:{or}\nAssumeReachable 1\nPathsNeededToBuildCircuits 0.67\n\
         TestingDirAuthVoteExit *\nTestingDirAuthVoteHSDir *\nTestingDirAuthVoteGuard *\nTestingMinExitFlagThreshold 0\n\
         V3AuthNIntervalsValid 2\n",
        data = data.display(),
        nick = node.nickname,
        or = node.or_port,
    );
    if let Some(pid) = owner {
        // tor exits when this process does: tests never leak a network.
        t.push_str(&format!("__OwningControllerProcess {pid}\n"));
    }
    for a in authorities {
        t.push_str(&format!(
            "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}\n",
            a.nickname,
            a.or_port,
            a.v3ident.as_deref().unwrap_or(""),
            a.dir_port.unwrap_or(0),
            a.rsa_fingerprint
        ));
    }
    match node.role {
        Role::Authority => t.push_str(&format!(
            "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nDirPort 127.0.0.1:{}\n\
             TestingV3AuthInitialVotingInterval 20\nV3AuthVotingInterval 20\nTestingV3AuthInitialVoteDelay 4\n\
             V3AuthVoteDelay 4\nTestingV3AuthInitialDistDelay 4\nV3AuthDistDelay 4\nExitRelay 0\nExitPolicy reject *:*\n",
            node.dir_port.unwrap_or(0)
        )),
        Role::Relay => t.push_str("ExitRelay 0\nExitPolicy reject *:*\n"),
        Role::Exit => t.push_str("ExitRelay 1\nExitPolicy accept 127.0.0.0/8:*\nExitPolicy reject *:*\n"),
    }
    t
}

/// The arti configuration that points a client at this network.
pub fn arti_toml(net: &Testnet) -> String {
    let auths: Vec<&Node> = net
        .nodes
        .iter()
        .filter(|n| n.role == Role::Authority)
        .collect();
    let quote_list = |items: Vec<String>| items.join(", ");
    let fallbacks = quote_list(
        auths
            .iter()
            .map(|a| format!("{{ rsa_identity = \"{}\", ed_identity = \"{}\", orports = [\"127.0.0.1:{}\"] }}", a.rsa_fingerprint, a.ed_identity, a.or_port))
            .collect(),
    );
    let v3 = quote_list(
        auths
            .iter()
            .map(|a| format!("\"{}\"", a.v3ident.as_deref().unwrap_or("")))
            .collect(),
    );
    let dirs = quote_list(
        auths
            .iter()
            .map(|a| format!("[\"127.0.0.1:{}\"]", a.dir_port.unwrap_or(0)))
            .collect(),
    );
    format!(
        "# A private Tor network on 127.0.0.1 made by `tormr testnet up`.\n\
         # Every tormr command takes it with --tor-config; each process keeps its own\n\
         # arti state and cache under its --state folder.\n\n\
         [path_rules]\n# All relays share 127.0.0.1: don't treat them as one family.\n\
         ipv4_subnet_family_prefix = 33\nipv6_subnet_family_prefix = 129\n\n\
         [address_filter]\nallow_local_addrs = true\n\n\
         [tor_network]\nfallback_caches = [{fallbacks}]\n\n\
         [tor_network.authorities]\nv3idents = [{v3}]\nuploads = [{dirs}]\ndownloads = [{dirs}]\nvotes = [{dirs}]\n\n\
         [override_net_params]\n# 24 voting intervals of 20 s; without it onion services never report Running here.\n\
         hsdir_interval = 8\nguard-max-sample-size = 4\nguard-min-filtered-sample-size = 2\nguard-n-primary-guards-to-use = 2\n"
    )
}

impl Testnet {
    /// Reads the state `up` left in `dir`.
    pub fn load(dir: &Path) -> Result<Self, TestnetError> {
        let path = state_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|_| TestnetError::NotUp {
            dir: dir.display().to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| TestnetError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })
    }

    fn save(&self) -> Result<(), TestnetError> {
        let path = state_path(&self.dir);
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&path, text).map_err(io_err(&path))
    }

    /// The ORPorts of every node: the only TCP peers a tormr process in Tor mode may have.
    pub fn or_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.or_port).collect()
    }

    /// Whether each node's process is alive.
    pub fn alive(&self) -> Vec<(&Node, bool)> {
        self.nodes
            .iter()
            .map(|n| {
                (
                    n,
                    n.pid
                        .is_some_and(|p| process_is_tor(p, &self.dir.join(&n.nickname))),
                )
            })
            .collect()
    }
}

/// Whether `pid` is a tor process using `data_dir` (so `down` never kills a stranger).
fn process_is_tor(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let torrc = data_dir.join("torrc");
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    text.contains("tor") && text.contains(&torrc.display().to_string())
}

/// Brings a network up in `dir` and waits for a usable consensus.
pub fn up(dir: &Path, progress: &dyn Fn(&str)) -> Result<Testnet, TestnetError> {
    up_owned(dir, None, progress)
}

/// Like [`up`], but the tor processes exit when process `owner` exits.
pub fn up_owned(
    dir: &Path,
    owner: Option<u32>,
    progress: &dyn Fn(&str),
) -> Result<Testnet, TestnetError> {
    require("tor")?;
    require("tor-gencert")?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    if let Ok(existing) = Testnet::load(&dir)
        && existing.alive().iter().any(|(_, up)| *up)
    {
        return Err(TestnetError::AlreadyUp {
            dir: dir.display().to_string(),
        });
    }
    let total = AUTHORITIES + RELAYS + EXITS;
    let ports = free_ports(total + AUTHORITIES)?;
    progress(&format!(
        "generating keys for {total} tor nodes (authorities take a few seconds each)"
    ));
    let mut nodes = Vec::new();
    for i in 0..total {
        let (role, nickname) = match i {
            i if i < AUTHORITIES => (Role::Authority, format!("auth{i}")),
            i if i < AUTHORITIES + RELAYS => (Role::Relay, format!("relay{}", i - AUTHORITIES)),
            i => (Role::Exit, format!("exit{}", i - AUTHORITIES - RELAYS)),
        };
        let data = dir.join(&nickname);
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).map_err(io_err(&data))?;
        let or_port = ports[i];
        let dir_port = (role == Role::Authority).then(|| ports[total + i]);
        let v3ident = match dir_port {
            Some(dp) => Some(authority_keys(&data, dp)?),
            None => None,
        };
        let (rsa_fingerprint, ed_identity) = identity(&data, &nickname, or_port)?;
        nodes.push(Node {
            nickname,
            role,
            or_port,
            dir_port,
            rsa_fingerprint,
            ed_identity,
            v3ident,
            pid: None,
        });
    }
    let authorities: Vec<Node> = nodes
        .iter()
        .filter(|n| n.role == Role::Authority)
        .cloned()
        .collect();
    progress("starting the tor processes");
    for node in &mut nodes {
        let data = dir.join(&node.nickname);
        let rc = data.join("torrc");
        std::fs::write(&rc, torrc(node, &dir, &authorities, owner)).map_err(io_err(&rc))?;
        run(
            &format!("starting {}", node.nickname),
            Command::new("tor").arg("-f").arg(&rc),
            b"",
        )?;
        let pid_path = data.join("tor.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.pid.is_none() && Instant::now() < deadline {
            node.pid = std::fs::read_to_string(&pid_path)
                .ok()
                .and_then(|p| p.trim().parse().ok());
            if node.pid.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let net = Testnet {
        dir: dir.clone(),
        nodes,
    };
    net.save()?;
    let config = arti_config_path(&dir);
    std::fs::write(&config, arti_toml(&net)).map_err(io_err(&config))?;
    progress("waiting for the authorities to sign a consensus (usually 20–40 s)");
    wait_for_consensus(&net, Duration::from_secs(180), progress)?;
    Ok(net)
}

/// Polls an authority's DirPort until the consensus lists (almost) every relay
/// with the HSDir flag.
fn wait_for_consensus(
    net: &Testnet,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<(), TestnetError> {
    let start = Instant::now();
    let want = net.nodes.len().saturating_sub(1);
    let mut last = usize::MAX;
    while start.elapsed() < limit {
        for a in net.nodes.iter().filter(|n| n.role == Role::Authority) {
            let Some(port) = a.dir_port else { continue };
            if let Some(text) = http_get(port, "/tor/status-vote/current/consensus-microdesc") {
                let hsdirs = text
                    .lines()
                    .filter(|l| l.starts_with("s ") && l.contains("HSDir"))
                    .count();
                if hsdirs != last {
                    progress(&format!(
                        "consensus lists {hsdirs} of {} relays as HSDirs",
                        net.nodes.len()
                    ));
                    last = hsdirs;
                }
                if hsdirs >= want {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Err(TestnetError::NoConsensus {
        secs: limit.as_secs(),
        dir: net.dir.display().to_string(),
    })
}

/// A minimal HTTP/1.0 GET against a loopback DirPort.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}

/// Stops every process `up` started in `dir`; returns how many it stopped.
pub fn down(dir: &Path) -> Result<usize, TestnetError> {
    let net = Testnet::load(dir)?;
    let mut stopped = 0;
    for (node, alive) in net.alive() {
        if alive && let Some(pid) = node.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            stopped += 1;
        }
    }
    // Give them a moment; then make sure.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && net.alive().iter().any(|(_, a)| *a) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (node, alive) in net.alive() {
        if alive && let Some(pid) = node.pid {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    Ok(stopped)
}

/// The testnet tests share: the one named by `TORMR_TESTNET_DIR` (CI brings
/// it up once), or one brought up now in a temporary folder and owned by this
/// process, so it stops when the tests end.
pub fn for_tests() -> Result<&'static Testnet, String> {
    use std::sync::OnceLock;
    static NET: OnceLock<Result<Testnet, String>> = OnceLock::new();
    NET.get_or_init(|| {
        if let Ok(dir) = std::env::var("TORMR_TESTNET_DIR") {
            return Testnet::load(Path::new(&dir)).map_err(|e| e.to_string());
        }
        let dir = std::env::temp_dir().join(format!("tormr-testnet-{}", std::process::id()));
        up_owned(&dir, Some(std::process::id()), &|line| {
            eprintln!("testnet: {line}")
        })
        .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(nick: &str, role: Role, or: u16, dir: Option<u16>) -> Node {
        Node {
            nickname: nick.into(),
            role,
            or_port: or,
            dir_port: dir,
            rsa_fingerprint: "A".repeat(40),
            ed_identity: "edkey".into(),
            v3ident: dir.map(|_| "B".repeat(40)),
            pid: None,
        }
    }

    #[test]
    fn torrc_and_arti_config_name_every_authority() {
        let auths = vec![
            node("auth0", Role::Authority, 5000, Some(6000)),
            node("auth1", Role::Authority, 5001, Some(6001)),
        ];
        let rc = torrc(
            &node("relay0", Role::Relay, 5002, None),
            Path::new("/tmp/tn"),
            &auths,
            Some(42),
        );
        assert!(rc.contains("__OwningControllerProcess 42"));
        assert!(rc.contains("DirAuthority auth1 orport=5001 no-v2 v3ident=BBBB"));
        assert!(rc.contains("ExitPolicy reject *:*"));
        let net = Testnet {
            dir: "/tmp/tn".into(),
            nodes: auths,
        };
        let cfg = arti_toml(&net);
        assert!(cfg.contains("orports = [\"127.0.0.1:5001\"]"));
        assert!(cfg.contains("hsdir_interval = 8"));
        assert!(cfg.contains("downloads = [[\"127.0.0.1:6000\"], [\"127.0.0.1:6001\"]]"));
    }
}
