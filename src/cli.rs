//! Command-line flags, as parsed. Validation into settings happens in the
//! commands; this file only describes what can be typed.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The flags Hadoop Streaming spells with one dash; `tormr submit` accepts
/// them exactly so, as well as with two.
pub const STREAMING_FLAGS: &[&str] = &[
    "input",
    "output",
    "mapper",
    "reducer",
    "combiner",
    "numReduceTasks",
    "file",
    "cmdenv",
    "partitioner",
    "mrjob",
];

/// Rewrites `-input` to `--input` (and so on) before clap sees the arguments,
/// stopping at `--`, after which arguments belong to the job's script.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        match arg.strip_prefix('-') {
            Some(rest)
                if !rest.starts_with('-')
                    && STREAMING_FLAGS.contains(&rest.split('=').next().unwrap_or("")) =>
            {
                out.push(format!("-{arg}"));
            }
            _ => out.push(arg),
        }
    }
    out
}

#[derive(Parser, Debug)]
#[command(name = "tormr", version, about = "Anonymous MapReduce over Tor onion services", long_about = None)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a MapReduce job (Hadoop Streaming flags or an mrjob script).
    #[command(after_help = SUBMIT_EXAMPLES)]
    Submit(Box<SubmitArgs>),
    /// Run a bulletin board, where owners and volunteers meet.
    Bulletin {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// Run a data layer that stores an owner's sealed buckets.
    Datalayer {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// Volunteer this machine: find work on a bulletin board and run it.
    #[command(after_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// Manage a submitted job.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// A private Tor network on 127.0.0.1, for trying tormr's Tor mode offline.
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Continue a job whose `tormr submit` died (crash, reboot, kill -9):
    /// finished tasks are kept, unfinished ones run again, workers still
    /// in the job reconnect to the same address.
    Resume(ResumeArgs),
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The job's state folder (`tormr submit --state DIR`, or the temporary
    /// folder `tormr submit` printed).
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Print a machine-readable summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ServeCommand {
    /// Serve until interrupted; prints the service's address on the first line of stdout.
    Serve(ServeArgs),
}

/// Where a long-running service keeps its state and how it is reached.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// State folder: keys (so the address survives restarts), store, Tor state.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// arti configuration (e.g. DIR/arti.toml from `tormr testnet up`); without
    /// it the real Tor network is used.
    #[arg(long, value_name = "FILE")]
    pub tor_config: Option<PathBuf>,
    /// Serve on 127.0.0.1:PORT over plain TCP instead of as an onion service
    /// (for tests and single-machine setups; no anonymity).
    #[arg(long, value_name = "PORT")]
    pub loopback_port: Option<u16>,
    /// Bulletin boards only: keep the board in etcd instead of STATE/board.redb
    /// (etcd://HOST:PORT[,HOST:PORT…][/NAMESPACE]). Every bulletin started on
    /// one store serves one board, under one board key kept in the store: run
    /// two or more and give owners and volunteers all their addresses.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The bulletin board to find work on (NAME.onion, or 127.0.0.1:PORT); a
    /// board served by several replicas: all their addresses, comma-separated.
    #[arg(long, value_name = "ADDR")]
    pub bulletin: String,
    /// State folder: the worker's pseudonym key, Tor state, job scratch space.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// arti configuration; without it the real Tor network is used.
    #[arg(long, value_name = "FILE")]
    pub tor_config: Option<PathBuf>,
    /// Tasks to run at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cores: u32,
    /// Memory offered (e.g. 2g); bounds each task's sort buffer.
    #[arg(long, default_value = "2g", value_name = "SIZE")]
    pub memory: String,
    /// Also take jobs that name no container image, and run their code as
    /// plain child processes, without a sandbox. Only for jobs you trust
    /// completely: their code can read your files and use your network. Jobs
    /// that name an image always run in containers.
    #[arg(long)]
    pub allow_unsandboxed_jobs: bool,
    /// This worker is the machine of the owner with this key (as `tormr
    /// submit --own-workers` prints it): it serves only her jobs, and runs
    /// those that name no image as plain processes.
    #[arg(long, value_name = "OWNER_KEY")]
    pub trusted_by: Option<String>,
    /// Disk the cache of job images may use in the Docker engine; the least
    /// recently used images are removed beyond it.
    #[arg(long, default_value = "10g", value_name = "SIZE")]
    pub image_cache: String,
    /// Size of the writable /tmp of each job container (it counts against
    /// the container's memory).
    #[arg(long, default_value = "256m", value_name = "SIZE")]
    pub task_tmp: String,
    /// Leave after one job instead of returning to the board.
    #[arg(long)]
    pub once: bool,
    /// Fault injection (tests and drills): misbehave, e.g. `cheat:0.1`
    /// forges every 10th answer of this worker in a job.
    #[arg(long = "fault", value_name = "SPEC", hide = true)]
    pub fault: Option<tormr_worker::faults::Misbehaviour>,
}

const WORKER_EXAMPLES: &str = "\
Examples:
  # On the private testnet (see `tormr testnet up`)
  tormr worker --bulletin ABC…XYZ.onion --state ~/.tormr/worker1 \\
      --tor-config /tmp/tn/arti.toml --cores 2 --memory 4g

  # Without a Docker engine, taking only image-less jobs you trust completely
  tormr worker --bulletin ABC…XYZ.onion --state ~/.tormr/worker1 --allow-unsandboxed-jobs";

#[derive(Subcommand, Debug)]
pub enum TestnetCommand {
    /// Start the network, wait for a consensus, write DIR/arti.toml.
    Up(TestnetArgs),
    /// Show which of the network's tor processes are running.
    Status(TestnetArgs),
    /// Stop exactly the processes `up` started.
    Down(TestnetArgs),
}

#[derive(Args, Debug)]
pub struct TestnetArgs {
    /// Folder for the network's keys, logs and arti.toml.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

const SUBMIT_EXAMPLES: &str = "\
Examples:
  # Word count with Python Streaming scripts on 2 local workers
  tormr submit --cluster 'local[2]' -input corpus.txt -output out \\
      -mapper 'python3 mapper.py' -reducer 'python3 reducer.py' \\
      -file examples/wordcount/mapper.py -file examples/wordcount/reducer.py

  # An mrjob script, with arguments for the script after --
  tormr submit --cluster 'local[3]' --mrjob examples/mrjob/mr_top_words.py \\
      -input corpus.txt -output top -- --top 10

  # A map-only grep, with a JSON summary for scripts
  tormr submit --cluster 'local[2]' -input logs/ -output hits -mapper 'grep ERROR' \\
      -reducer NONE --json";

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Where to run: 'local[N]' runs a bulletin, a job master, a data layer
    /// and N workers in this process over loopback; 'tor://BULLETIN.onion'
    /// asks that bulletin board for --workers volunteers over Tor (a board
    /// with replicas: 'tor://A.onion,B.onion'); 'tcp://HOST:PORT[,…]' does
    /// the same over plain TCP, without anonymity (tests, one machine).
    #[arg(long)]
    pub cluster: String,
    /// Workers to gather on the bulletin board (tor:// clusters).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Fewest workers to settle for once --wait has passed (default: --workers).
    #[arg(long, value_name = "N")]
    pub min_workers: Option<u32>,
    /// How long to gather workers before settling for --min-workers (e.g. 10m).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub wait: String,
    /// arti configuration (e.g. DIR/arti.toml from `tormr testnet up`).
    #[arg(long, value_name = "FILE")]
    pub tor_config: Option<PathBuf>,
    /// Use this data layer (NAME.onion) instead of running one in this process.
    #[arg(long, value_name = "ADDR", requires = "datalayer_secret")]
    pub datalayer: Option<String>,
    /// The data layer's secret (its STATE/datalayer.secret), to mint tokens for it.
    #[arg(long, value_name = "FILE", requires = "datalayer")]
    pub datalayer_secret: Option<PathBuf>,
    /// Input file or folder (repeatable; folders are read recursively,
    /// skipping names that start with '.' or '_').
    #[arg(long = "input", required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Output folder; it must not exist yet.
    #[arg(long)]
    pub output: PathBuf,
    /// Mapper command (Streaming contract: lines in, KEY<TAB>VALUE lines out).
    #[arg(long, value_name = "CMD")]
    pub mapper: Option<String>,
    /// Reducer command, or NONE for a map-only job. Omitted: identity reducer.
    #[arg(long, value_name = "CMD")]
    pub reducer: Option<String>,
    /// Combiner command, run on sorted map output before the shuffle.
    #[arg(long, value_name = "CMD")]
    pub combiner: Option<String>,
    /// Number of reduce tasks (partitions).
    #[arg(long = "numReduceTasks", value_name = "R")]
    pub num_reduce_tasks: Option<u32>,
    /// A file shipped into every task's working folder (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// A job setting KEY=VALUE (repeatable), e.g. mapreduce.job.reduces=4.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    pub defines: Vec<String>,
    /// An environment variable KEY=VALUE for the job's commands (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub cmdenv: Vec<String>,
    /// Partitioner class: HashPartitioner (default) or KeyFieldBasedPartitioner.
    #[arg(long, value_name = "CLASS")]
    pub partitioner: Option<String>,
    /// Run an mrjob script instead of Streaming commands.
    #[arg(long, value_name = "SCRIPT.py", conflicts_with_all = ["mapper", "reducer", "combiner"])]
    pub mrjob: Option<PathBuf>,
    /// Run a Pachyderm pipeline spec (JSON or YAML): its transform.image and
    /// transform.cmd over the datums its glob cuts from the one -input folder;
    /// the files its datums write to /pfs/out are merged into -output.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["mapper", "reducer", "combiner", "mrjob", "image"])]
    pub pachyderm: Option<PathBuf>,
    /// Python interpreter for mrjob scripts (on the owner's and workers' machines).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Run the job's commands in containers of this image of your local
    /// Docker engine (no network, read-only root, limits, non-root). Over Tor
    /// the image is exported and served to the workers by the job master.
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Run only on your own workers (over Tor): those started with
    /// `--trusted-by` the public half of the owner key in FILE (created if
    /// missing). They run the job's code without a sandbox if it names no image.
    #[arg(long, value_name = "FILE")]
    pub own_workers: Option<PathBuf>,
    /// Your long-term owner key (created if missing; default
    /// STATE/owner/owner.key): it vouches for each job's key, so the board
    /// keeps the pseudonyms you banned out of your jobs and matches the
    /// arbiters you name. Keep one key to carry bans across state folders.
    #[arg(long, value_name = "FILE")]
    pub owner_key: Option<PathBuf>,
    /// One of your own workers (its pseudonym, as `tormr worker` prints it;
    /// started `--trusted-by` your owner key) to settle disputes between
    /// volunteers' answers; matched besides --workers when idle (repeatable,
    /// up to 16; tor:// and tcp:// clusters).
    #[arg(long = "arbiter", value_name = "PSEUDONYM")]
    pub arbiters: Vec<String>,
    /// Fault injection (local clusters, tests and drills): one more worker
    /// that misbehaves, e.g. `cheat:0.1` forges every 10th answer. Such
    /// workers are volunteers, not the owner's: their answers get verified.
    #[arg(long = "local-fault", value_name = "SPEC", hide = true)]
    pub local_faults: Vec<tormr_worker::faults::Misbehaviour>,
    /// Print a machine-readable summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Keep the job's state (store, keys) in this folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Input bucket size before compression (default 64m; also -D tormr.bucket.bytes).
    #[arg(long, value_name = "SIZE")]
    pub bucket_size: Option<String>,
    /// Arguments passed to the mrjob script.
    #[arg(last = true, value_name = "ARGS")]
    pub script_args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_streaming_flags_become_long_flags() {
        let args = [
            "tormr",
            "submit",
            "-input",
            "a",
            "-D",
            "x=y",
            "-numReduceTasks",
            "2",
            "--",
            "-input",
        ]
        .map(String::from);
        assert_eq!(
            normalize_args(args),
            [
                "tormr",
                "submit",
                "--input",
                "a",
                "-D",
                "x=y",
                "--numReduceTasks",
                "2",
                "--",
                "-input"
            ]
        );
    }

    #[test]
    fn the_documented_command_lines_parse() {
        let line = "tormr submit --cluster local[2] -input in -output out -mapper m -reducer r -combiner c -numReduceTasks 3 -file f -D a=b -cmdenv K=V";
        let cli = Cli::try_parse_from(normalize_args(line.split(' ').map(String::from))).unwrap();
        let Command::Submit(s) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(s.num_reduce_tasks, Some(3));
        assert_eq!(s.defines, ["a=b"]);
        let line = "tormr submit --cluster local[2] --mrjob x.py -input in -output out -- --top 3";
        let cli = Cli::try_parse_from(normalize_args(line.split(' ').map(String::from))).unwrap();
        let Command::Submit(s) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(s.script_args, ["--top", "3"]);
        let bad = "tormr submit --cluster local[2] --mrjob x.py -mapper m -input in -output out";
        assert!(Cli::try_parse_from(normalize_args(bad.split(' ').map(String::from))).is_err());
    }
}
