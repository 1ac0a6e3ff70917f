//! `tormr testnet up|status|down`.

use crate::cli::TestnetCommand;
use anyhow::Result;
use tormr_onion::testnet;

pub async fn run(command: TestnetCommand) -> Result<()> {
    match command {
        TestnetCommand::Up(args) => {
            let dir = args.dir.clone();
            let net =
                tokio::task::spawn_blocking(move || testnet::up(&dir, &|line| eprintln!("{line}")))
                    .await??;
            let config = testnet::arti_config_path(&net.dir);
            eprintln!("testnet up: {} tor nodes on 127.0.0.1", net.nodes.len());
            println!("{}", config.display());
            eprintln!(
                "pass --tor-config {} to every tormr command",
                config.display()
            );
        }
        TestnetCommand::Status(args) => {
            let net = testnet::Testnet::load(&args.dir)?;
            for (node, alive) in net.alive() {
                println!(
                    "{:<8} {:<9} orport {:<5} {}",
                    node.nickname,
                    format!("{:?}", node.role).to_lowercase(),
                    node.or_port,
                    if alive { "running" } else { "stopped" }
                );
            }
        }
        TestnetCommand::Down(args) => {
            let stopped = testnet::down(&args.dir)?;
            eprintln!("stopped {stopped} tor process(es)");
        }
    }
    Ok(())
}
