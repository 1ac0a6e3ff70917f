//! Helpers for the Tor tests: the shared testnet, role processes, the socket
//! auditor, and in-process clients over Tor.

use crate::sockets;
use crate::util::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tormr_net::Address;
use tormr_onion::testnet::{self, Testnet};

/// Tor tests run one at a time: each brings up several Tor clients.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn net() -> &'static Testnet {
    testnet::for_tests().unwrap_or_else(|e| {
        panic!("these tests need a private Tor network (is `tor` installed?): {e}")
    })
}

pub fn arti_toml(net: &Testnet) -> PathBuf {
    testnet::arti_config_path(&net.dir)
}

/// Every role process's log, so a failed job can show what the others saw.
fn running_logs() -> MutexGuard<'static, Vec<PathBuf>> {
    static LOGS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    LOGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The last lines of every role's log that still exists (the failed test's
/// bulletin and workers; earlier tests' folders are gone).
fn tails_of_role_logs() -> String {
    let mut out = String::new();
    for log in running_logs().iter().filter(|l| l.exists()) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(" WARN Request failed"))
            .collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        out.push_str(&format!(
            "--- {} (last {} lines)\n{}\n",
            log.display(),
            tail.len(),
            tail.join("\n")
        ));
    }
    out
}

/// A tormr process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stderr(Stdio::from(file))
            .spawn()
            .expect("starting tormr");
        running_logs().push(log.clone());
        Proc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A worker that also takes jobs without an image (as plain processes).
    pub fn worker(bulletin: &Address, state: &Path, net: &Testnet) -> Proc {
        Self::worker_with(bulletin, state, net, &["--allow-unsandboxed-jobs"])
    }

    /// A worker that runs others' code only in containers.
    pub fn sandboxed_worker(bulletin: &Address, state: &Path, net: &Testnet) -> Proc {
        Self::worker_with(bulletin, state, net, &[])
    }

    /// The owner's own worker: `--trusted-by` her owner key.
    pub fn own_worker(bulletin: &Address, state: &Path, net: &Testnet, owner: &str) -> Proc {
        Self::worker_with(bulletin, state, net, &["--trusted-by", owner])
    }

    fn worker_with(bulletin: &Address, state: &Path, net: &Testnet, flags: &[&str]) -> Proc {
        std::fs::create_dir_all(state).unwrap();
        let mut cmd = tormr();
        cmd.arg("worker")
            .arg("--bulletin")
            .arg(bulletin.as_str())
            .arg("--state")
            .arg(state);
        cmd.arg("--tor-config")
            .arg(arti_toml(net))
            .args(flags)
            .stdout(Stdio::null());
        Proc::spawn(&mut cmd, state.with_extension("log"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A long-running service process and the address it printed.
pub struct Service {
    pub address: Address,
    pub proc: Proc,
}

/// A bulletin and `n` workers that take jobs without an image, each with
/// its state in `dir`.
pub fn board_and_workers(dir: &Path, n: usize, net: &Testnet) -> (Service, Vec<Proc>) {
    let bulletin = Service::start("bulletin", &dir.join("bulletin"), net);
    let workers = (0..n)
        .map(|i| Proc::worker(&bulletin.address, &dir.join(format!("worker{i}")), net))
        .collect();
    (bulletin, workers)
}

impl Service {
    pub fn start(kind: &str, state: &Path, net: &Testnet) -> Service {
        std::fs::create_dir_all(state).unwrap();
        let mut cmd = tormr();
        cmd.arg(kind)
            .arg("serve")
            .arg("--state")
            .arg(state)
            .arg("--tor-config")
            .arg(arti_toml(net))
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(&mut cmd, state.with_extension("log"));
        let stdout = proc.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{kind} printed no address: {}", proc.log()));
        let address = Address::parse(line.trim())
            .unwrap_or_else(|e| panic!("{kind} printed {line:?}: {e}; log: {}", proc.log()));
        assert!(address.is_onion(), "{kind} must serve as an onion service");
        Service { address, proc }
    }

    /// `submit` flags for a cluster of `workers` gathered on this board.
    pub fn tor_cluster(&self, workers: u32, net: &Testnet) -> Vec<String> {
        vec![
            "--cluster".into(),
            format!("tor://{}", self.address),
            "--workers".into(),
            workers.to_string(),
            "--tor-config".into(),
            arti_toml(net).display().to_string(),
        ]
    }
}

struct Watched {
    name: String,
    pid: u32,
    /// The owner's status page, learnt from its log.
    log: Option<PathBuf>,
    samples: u32,
    relay_samples: u32,
}

/// Samples every watched process's sockets until finished.
pub struct Auditor {
    watched: Arc<Mutex<Vec<Watched>>>,
    violations: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

fn status_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = text.split("status page at http://127.0.0.1:").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

impl Auditor {
    pub fn start(net: &Testnet, pids: Vec<u32>) -> Auditor {
        let watched: Vec<Watched> = pids
            .into_iter()
            .enumerate()
            .map(|(i, pid)| Watched {
                name: format!("process {i} (pid {pid})"),
                pid,
                log: None,
                samples: 0,
                relay_samples: 0,
            })
            .collect();
        let watched = Arc::new(Mutex::new(watched));
        let violations: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let or_ports = net.or_ports();
        let (w, v, s) = (watched.clone(), violations.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for p in w.lock().unwrap().iter_mut() {
                    if !std::path::Path::new(&format!("/proc/{}", p.pid)).exists() {
                        continue;
                    }
                    let allowed: Vec<u16> =
                        p.log.as_deref().and_then(status_port).into_iter().collect();
                    let found = sockets::violations(p.pid, &or_ports, &allowed);
                    p.samples += 1;
                    if sockets::talks_to_relays(p.pid, &or_ports) {
                        p.relay_samples += 1;
                    }
                    if !found.is_empty() {
                        v.lock()
                            .unwrap()
                            .entry(p.name.clone())
                            .or_default()
                            .extend(found);
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        Auditor {
            watched,
            violations,
            stop,
            thread: Some(thread),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs the owner's `submit` under audit; returns its log.
    pub fn run_owner(&self, cmd: &mut Command) -> String {
        let log = self
            .dir
            .path()
            .join(format!("owner-{}.log", self.watched.lock().unwrap().len()));
        let file = std::fs::File::create(&log).unwrap();
        let mut child = cmd
            .stderr(Stdio::from(file))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.watched.lock().unwrap().push(Watched {
            name: format!("owner (pid {})", child.id()),
            pid: child.id(),
            log: Some(log.clone()),
            samples: 0,
            relay_samples: 0,
        });
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success(),
            "the job over Tor failed ({status}):\n{text}\n{}",
            tails_of_role_logs()
        );
        text
    }

    pub fn finish(mut self) -> AuditReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let watched = std::mem::take(&mut *self.watched.lock().unwrap());
        let violations = std::mem::take(&mut *self.violations.lock().unwrap());
        AuditReport {
            watched: watched
                .into_iter()
                .map(|w| (w.name, w.samples, w.relay_samples))
                .collect(),
            violations,
        }
    }
}

pub struct AuditReport {
    watched: Vec<(String, u32, u32)>,
    violations: BTreeMap<String, Vec<String>>,
}

impl AuditReport {
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }

    pub fn assert_clean(&self) {
        for (name, samples, relay) in &self.watched {
            assert!(*samples > 3, "{name} was sampled only {samples} times");
            assert!(
                *relay > 0,
                "{name} never had a connection to a relay: was it really using Tor?"
            );
        }
        assert!(
            self.violations.is_empty(),
            "non-Tor sockets: {:#?}",
            self.violations
        );
    }
}

/// Every part file's bytes, in order.
pub fn read_parts(dir: &Path) -> Vec<Vec<u8>> {
    parts(dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// The onion hostnames (56 base32 characters) in `text`.
pub fn onion_addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(".onion") {
        let start = i.saturating_sub(56);
        let host = &text[start..i];
        if host.len() == 56
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            out.push(format!("{host}.onion"));
        }
    }
    out
}

pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The number of volunteers a board reports, asked over Tor.
pub fn board_volunteers(board: &Address, scratch: &Path, net: &Testnet) -> Option<u32> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let state = scratch.join(format!("probe{}", N.fetch_add(1, Ordering::Relaxed)));
    runtime().block_on(async {
        let settings = tormr_onion::TorSettings {
            config_file: Some(arti_toml(net)),
            state_dir: state,
        };
        let tor = tormr_onion::OnionTransport::bootstrap(&settings)
            .await
            .ok()?;
        let http = tormr_net::HttpClient::new(Arc::new(tor), board.clone())
            .with_timeout(Duration::from_secs(60));
        let client = tormr_bulletin::BulletinClient::new(http);
        for _ in 0..30 {
            if let Ok(info) = client.info().await {
                return Some(info.volunteers);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        None
    })
}

/// A job master published over Tor (restricted to one client), and joins
/// with a valid, a replayed, a forged and a stolen ticket.
pub fn tickets_over_tor(net: &Testnet) {
    use tormr_core::identity::{Identity, Signed};
    use tormr_core::ids::{JobId, RequestId, TicketId};
    use tormr_core::wire::bulletin::JoinTicket;
    use tormr_core::wire::job::{Join, JoinProof};
    use tormr_net::transport::ServiceSpec;
    use tormr_net::{HttpClient, Server, ServerConfig, Transport};

    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let settings = |name: &str| tormr_onion::TorSettings {
            config_file: Some(arti_toml(net)),
            state_dir: dir.path().join(name),
        };
        let owner = tormr_onion::OnionTransport::bootstrap(&settings("owner"))
            .await
            .unwrap();
        let worker_tor = tormr_onion::OnionTransport::bootstrap(&settings("worker"))
            .await
            .unwrap();
        let memory = Arc::new(tormr_net::memory::MemoryTransport::new());
        let secret = tormr_core::token::TokenSecret::random();
        let store = Arc::new(tormr_datalayer::DirStore::open(&dir.path().join("d")).unwrap());
        let d = Server::spawn(
            memory.publish(&ServiceSpec::new("d")).await.unwrap(),
            Arc::new(tormr_datalayer::DataLayer::new(
                store,
                secret.clone(),
                Default::default(),
            )),
            ServerConfig::default(),
        );
        let job = JobId::random();
        let job_key = Arc::new(Identity::generate());
        let jm = tormr_jobmaster::JobMaster::create(tormr_jobmaster::JobMasterConfig {
            job: job.clone(),
            spec: tormr_core::spec::JobSpec {
                name: "t".into(),
                steps: vec![],
                files: vec![],
                env: Default::default(),
                conf: Default::default(),
                limits: Default::default(),
                image: None,
                pachyderm: None,
            },
            identity: job_key.clone(),
            datalayer: d.address().clone(),
            secret,
            store: Arc::new(tormr_core::store::memory::MemoryStore::new()),
            files: Default::default(),
            image: None,
            endorsement: None,
            scheduler: Default::default(),
            heartbeat_secs: 10,
            data: tormr_datalayer::DataClient::new(
                vec![HttpClient::new(memory, d.address().clone())],
                job,
            ),
            clock: Arc::new(tormr_jobmaster::clock::SystemClock),
            trust: tormr_jobmaster::trust::TrustBook::new(Arc::new(
                tormr_core::store::memory::MemoryStore::new(),
            )),
            trusted_workers: Default::default(),
            bans: None,
        })
        .await
        .unwrap();
        let board = Identity::generate();
        let request = RequestId::random();
        jm.set_cluster(tormr_jobmaster::records::ClusterRecord {
            board: board.public(),
            request: request.clone(),
            earlier: Vec::new(),
        })
        .await
        .unwrap();
        let spec = ServiceSpec::new("job").restricted_to(vec![worker_tor.discovery_key_text()]);
        let api = Server::spawn(
            owner.publish(&spec).await.unwrap(),
            Arc::new(tormr_jobmaster::service::WorkerApi(jm.clone())),
            ServerConfig::default(),
        );
        let address = api.address().clone();
        let http = HttpClient::new(Arc::new(worker_tor), address.clone())
            .with_timeout(Duration::from_secs(90));
        let ticket_for = |worker: &Identity, signer: &Identity| {
            let now = tormr_core::unix_now();
            Signed::sign(
                signer,
                &JoinTicket {
                    ticket: TicketId::random(),
                    request: request.clone(),
                    job_key: job_key.public(),
                    job_address: address.to_string(),
                    worker: worker.public(),
                    issued_at: now,
                    expires_at: now + 600,
                },
            )
        };
        let join = |ticket: Signed<JoinTicket>, prover: &Identity| {
            let t = ticket.open().unwrap();
            Join {
                proof: Signed::sign(
                    prover,
                    &JoinProof {
                        ticket: t.ticket,
                        job_key: t.job_key,
                        issued_at: tormr_core::unix_now(),
                    },
                ),
                ticket,
            }
        };
        let me = Identity::generate();
        let valid = ticket_for(&me, &board);
        let first = join(valid.clone(), &me);
        let joined = tormr_net::client::with_retries(20, || http.call(&first))
            .await
            .expect("a valid ticket joins over Tor");
        assert!(!joined.session.is_empty());
        let replay = http.call(&join(valid, &me)).await.unwrap_err();
        assert_eq!(replay.code(), Some("ticket_used"), "{replay}");
        let forged = http
            .call(&join(ticket_for(&me, &Identity::generate()), &me))
            .await
            .unwrap_err();
        assert_eq!(forged.code(), Some("forbidden"), "{forged}");
        let stolen = http
            .call(&join(ticket_for(&me, &board), &Identity::generate()))
            .await
            .unwrap_err();
        assert_eq!(stolen.code(), Some("forbidden"), "{stolen}");
    });
}

/// One job's traffic summary from a worker's log.
#[derive(Debug)]
pub struct Traffic {
    pub tasks: u64,
    pub jm_requests: u64,
    pub jm_connections: u64,
    pub data_requests: u64,
    pub data_connections: u64,
}

pub fn traffic(log: &str) -> Vec<Traffic> {
    log.lines()
        .filter_map(|l| l.split("traffic: ").nth(1))
        .map(|l| {
            let n: Vec<u64> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            Traffic {
                tasks: n[0],
                jm_requests: n[1],
                jm_connections: n[2],
                data_requests: n[3],
                data_connections: n[4],
            }
        })
        .collect()
}
