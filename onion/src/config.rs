//! arti's configuration, from an optional TOML file (the testnet's `arti.toml`,
//! or an operator's own) with storage moved under the process's state folder.

use arti_client::config::{CfgPath, TorClientConfig, TorClientConfigBuilder};
use std::path::{Path, PathBuf};

/// Where a process's Tor state lives and which network it talks to.
#[derive(Debug, Clone)]
pub struct TorSettings {
    /// An arti configuration file; `None` is the real Tor network.
    pub config_file: Option<PathBuf>,
    /// The process's state folder; arti keeps its keys and caches under `tor/`.
    pub state_dir: PathBuf,
}

/// Why arti's configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("could not read the Tor configuration {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the Tor configuration {path} is not valid arti TOML: {why}")]
    Parse { path: String, why: String },
    #[error("the Tor configuration is not usable: {0}")]
    Build(String),
}

impl TorSettings {
    pub fn tor_dir(&self) -> PathBuf {
        self.state_dir.join("tor")
    }

    /// Builds arti's configuration.
    pub fn client_config(&self) -> Result<TorClientConfig, ConfigError> {
        let mut builder = match &self.config_file {
            Some(path) => read_builder(path)?,
            None => TorClientConfigBuilder::default(),
        };
        let dir = self.tor_dir();
        builder
            .storage()
            .state_dir(CfgPath::new_literal(dir.join("state")))
            .cache_dir(CfgPath::new_literal(dir.join("cache")));
        // tormr makes its state folders itself (mode 0700 below); temporary
        // ones may live under a world-writable /tmp, which arti would refuse.
        builder.storage().permissions().dangerously_trust_everyone();
        builder
            .build()
            .map_err(|e| ConfigError::Build(e.to_string()))
    }
}

fn read_builder(path: &Path) -> Result<TorClientConfigBuilder, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: shown,
        why: e.to_string(),
    })
}

/// Creates `dir` readable by its owner only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
