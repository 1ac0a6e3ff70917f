//! tormr-onion puts tormr's roles behind Tor onion services.
//!
//! [`OnionTransport`] implements tormr-net's [`Transport`](tormr_net::Transport)
//! with arti: publishing a service launches an onion service whose identity key
//! lives in the process's state folder (the same address after a restart), and
//! connecting to a `.onion` address opens a Tor stream. A service can restrict
//! discovery to the clients whose keys it lists, so an address leaked from the
//! bulletin board is useless to anybody else. Isolated transports share one
//! Tor client but never share circuits, which is how bulk transfers spread
//! over several circuits at once.
//!
//! Everything arti-specific is in this crate, so editing any other crate never
//! rebuilds arti, and only the `tormr` binary links it.
//!
//! # Layout
//!
//! - [`transport`]: the onion transport, its listener and discovery keys.
//! - [`config`]: building arti's configuration from `--tor-config` and the state folder.
//! - [`testnet`]: a private Tor network on 127.0.0.1 from Debian's `tor`.

pub mod config;
pub mod testnet;
pub mod transport;

pub use config::TorSettings;
pub use transport::{OnionError, OnionTransport};
