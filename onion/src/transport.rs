//! The onion transport: arti behind tormr-net's `Transport` trait.

use crate::config::{ConfigError, TorSettings, private_dir};
use arti_client::{TorClient, config::TorClientConfig};
use async_trait::async_trait;
use futures::{Stream, StreamExt};
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tor_cell::relaycell::msg::Connected;
use tor_hscrypto::pk::{HsClientDescEncKey, HsClientDescEncSecretKey, HsId, HsIdKeypair};
use tor_hsservice::config::OnionServiceConfigBuilder;
use tor_hsservice::config::restricted_discovery::HsClientNickname;
use tor_hsservice::{
    HsIdKeypairSpecifier, HsNickname, RunningOnionService, StreamRequest, handle_rend_requests,
};
use tor_keymgr::KeystoreSelector;
use tor_llcrypto::pk::curve25519;
use tor_proto::stream::IncomingStreamRequest;
use tor_rtcompat::PreferredRuntime;
use tormr_net::Address;
use tormr_net::transport::{BoxStream, Listener, NetError, ServiceSpec, Transport};

/// Why the Tor side failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnionError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not create the Tor state folder {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "could not connect to the Tor network: {0}; check --tor-config (is the testnet up?) or your network"
    )]
    Bootstrap(String),
    #[error("the discovery key file {path} is damaged; move it away to make a new one")]
    DiscoveryKey { path: String },
}

type Requests = Pin<Box<dyn Stream<Item = StreamRequest> + Send>>;

/// Onion services the transport launched; they stop when the transport is dropped.
type Services = Arc<Mutex<Vec<Arc<RunningOnionService>>>>;

/// Tor as a tormr transport.
#[derive(Clone)]
pub struct OnionTransport {
    tor: Arc<TorClient<PreferredRuntime>>,
    services: Services,
    /// This process's restricted-discovery client key (x25519 secret).
    discovery: [u8; 32],
}

/// The port every tormr onion service answers on.
pub const VIRTUAL_PORT: u16 = 80;

fn discovery_secret(dir: &Path) -> Result<[u8; 32], OnionError> {
    let path = dir.join("discovery.key");
    match std::fs::read(&path) {
        Ok(raw) => raw.try_into().map_err(|_| OnionError::DiscoveryKey {
            path: path.display().to_string(),
        }),
        Err(_) => {
            let secret = tormr_core::random::bytes::<32>();
            tormr_core::identity::write_private(&path, &secret).map_err(|source| {
                OnionError::State {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Ok(secret)
        }
    }
}

fn client_key(secret: &[u8; 32]) -> (HsClientDescEncSecretKey, HsClientDescEncKey) {
    let sk = curve25519::StaticSecret::from(*secret);
    let pk = curve25519::PublicKey::from(&sk);
    (
        HsClientDescEncSecretKey::from(sk),
        HsClientDescEncKey::from(pk),
    )
}

fn hsid_of(address: &Address) -> Result<HsId, NetError> {
    HsId::from_str(address.host()).map_err(|e| NetError::Connect {
        address: address.redacted(),
        why: format!("not an onion address: {e}"),
    })
}

fn onion_address(hsid: &HsId) -> Result<Address, NetError> {
    let text = safelog::DisplayRedacted::display_unredacted(hsid).to_string();
    Address::parse(&format!("{text}:{VIRTUAL_PORT}")).map_err(|e| NetError::Publish {
        name: "onion".into(),
        why: e.to_string(),
    })
}

impl OnionTransport {
    /// Connects to the Tor network named by `settings` (bootstrapping may take
    /// a while on the real network; on the testnet it takes about a second).
    pub async fn bootstrap(settings: &TorSettings) -> Result<Self, OnionError> {
        let dir = settings.tor_dir();
        private_dir(&dir).map_err(|source| OnionError::State {
            path: dir.display().to_string(),
            source,
        })?;
        let config: TorClientConfig = settings.client_config()?;
        let tor = TorClient::create_bootstrapped(config)
            .await
            .map_err(|e| OnionError::Bootstrap(e.to_string()))?;
        let discovery = discovery_secret(&dir)?;
        Ok(OnionTransport {
            tor,
            services: Arc::new(Mutex::new(Vec::new())),
            discovery,
        })
    }

    /// A transport on the same Tor client whose streams never share a circuit
    /// with this one's: one lane of a parallel transfer.
    pub fn isolated(&self) -> Self {
        OnionTransport {
            tor: self.tor.isolated_client(),
            services: self.services.clone(),
            discovery: self.discovery,
        }
    }

    /// This process's public discovery key, in arti's `descriptor:x25519:…` form.
    pub fn discovery_key_text(&self) -> String {
        client_key(&self.discovery).1.to_string()
    }

    /// Lets this client discover `hsid` if that service lists our key.
    fn authorize(&self, hsid: HsId) {
        let (secret, _) = client_key(&self.discovery);
        if let Ok(Some(_)) = self.tor.get_service_discovery_key(hsid) {
            return;
        }
        if let Err(e) =
            self.tor
                .insert_service_discovery_key(KeystoreSelector::Primary, hsid, secret)
        {
            tracing::debug!("could not store a discovery key: {e}");
        }
    }
}

fn nickname(spec: &ServiceSpec) -> Result<HsNickname, NetError> {
    HsNickname::from_str(&spec.nickname).map_err(|e| NetError::Publish {
        name: spec.nickname.clone(),
        why: e.to_string(),
    })
}

#[async_trait]
impl Transport for OnionTransport {
    async fn connect(&self, address: &Address) -> Result<BoxStream, NetError> {
        if !address.is_onion() {
            // In Tor mode nothing may reach a clearnet address, not even loopback.
            return Err(NetError::Unsupported {
                address: address.redacted(),
                transport: "onion",
                why: "only .onion addresses are reachable in Tor mode".into(),
            });
        }
        self.authorize(hsid_of(address)?);
        let stream = self
            .tor
            .connect((address.host(), address.port()))
            .await
            .map_err(|e| NetError::Connect {
                address: address.redacted(),
                why: e.to_string(),
            })?;
        Ok(Box::new(stream))
    }

    async fn publish(&self, spec: &ServiceSpec) -> Result<Box<dyn Listener>, NetError> {
        let fail = |why: String| NetError::Publish {
            name: spec.nickname.clone(),
            why,
        };
        let mut config = OnionServiceConfigBuilder::default();
        config.nickname(nickname(spec)?);
        if let Some(allowed) = &spec.allowed_clients {
            let restricted = config.restricted_discovery();
            restricted.enabled(true);
            for (i, key) in allowed.iter().enumerate() {
                let key = HsClientDescEncKey::from_str(key)
                    .map_err(|e| fail(format!("client key {key:?}: {e}")))?;
                let name = HsClientNickname::from_str(&format!("client{i}"))
                    .map_err(|e| fail(e.to_string()))?;
                restricted.static_keys().access().push((name, key));
            }
        }
        let config = config.build().map_err(|e| fail(e.to_string()))?;
        let (service, rend_requests) = self
            .tor
            .launch_onion_service(config)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("the service is disabled".into()))?;
        let hsid = service
            .onion_address()
            .ok_or_else(|| fail("the service has no address yet".into()))?;
        let address = onion_address(&hsid)?;
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(service.clone());
        let requests: Requests = Box::pin(handle_rend_requests(rend_requests));
        Ok(Box::new(OnionListener {
            address,
            requests,
            _service: service,
        }))
    }

    async fn reserve(&self, spec: &ServiceSpec) -> Result<Option<Address>, NetError> {
        let keymgr = self.tor.keymgr().map_err(|e| NetError::Publish {
            name: spec.nickname.clone(),
            why: e.to_string(),
        })?;
        let key_spec = HsIdKeypairSpecifier::new(nickname(spec)?);
        let mut rng = tor_llcrypto::rng::CautiousRng;
        let keypair: HsIdKeypair = keymgr
            .get_or_generate(&key_spec, KeystoreSelector::Primary, &mut rng)
            .map_err(|e| NetError::Publish {
                name: spec.nickname.clone(),
                why: e.to_string(),
            })?;
        let public = tor_hscrypto::pk::HsIdKey::from(&keypair);
        Ok(Some(onion_address(&HsId::from(public))?))
    }

    fn discovery_key(&self) -> Option<String> {
        Some(self.discovery_key_text())
    }

    fn isolated(&self) -> Option<Arc<dyn Transport>> {
        Some(Arc::new(OnionTransport::isolated(self)))
    }

    fn kind(&self) -> &'static str {
        "onion"
    }
}

/// Streams arriving at one onion service.
struct OnionListener {
    address: Address,
    requests: Requests,
    _service: Arc<RunningOnionService>,
}

#[async_trait]
impl Listener for OnionListener {
    fn address(&self) -> Address {
        self.address.clone()
    }

    async fn accept(&mut self) -> Result<BoxStream, NetError> {
        loop {
            let request = self
                .requests
                .next()
                .await
                .ok_or_else(|| NetError::Accept("the onion service stopped".into()))?;
            // Only BEGIN to our one port, as every onion service should.
            let wanted = matches!(request.request(), IncomingStreamRequest::Begin(b) if b.port() == VIRTUAL_PORT);
            if !wanted {
                let _ = request.shutdown_circuit();
                continue;
            }
            match tokio::time::timeout(
                Duration::from_secs(30),
                request.accept(Connected::new_empty()),
            )
            .await
            {
                Ok(Ok(stream)) => return Ok(Box::new(stream)),
                Ok(Err(e)) => tracing::debug!("accepting an onion stream failed: {e}"),
                Err(_) => tracing::debug!("accepting an onion stream timed out"),
            }
        }
    }
}
