//! The `iwf` binary: the appliance (the packet path) and the operator's tools.
mod ctl;
mod scaling;
mod traffic;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use std::io::Read;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// iwf: interworking function between SIP MESSAGE/CPIM/IMDN and SMPP legacy systems.
#[derive(Parser)]
#[command(name = "iwf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The man pages and shell completions of this CLI, written into `out`.
fn assets(out: &str) -> std::io::Result<()> {
    use clap::CommandFactory;
    let dir = std::path::Path::new(out);
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), dir)?;
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "iwf", dir)?;
    }
    Ok(())
}

/// Where a packaged iwf keeps its configuration.
const DEFAULT_CONFIG: &str = "/etc/iwf/iwf.toml";

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: EAL, ports and pipelines from the configuration, until SIGINT/SIGTERM.
    Run {
        /// The iwf configuration (TOML), e.g. config/lab.toml.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: String,
    },
    /// Judge a configuration offline: the errors a start or reload would refuse it with
    /// (line, key, what was expected; exit 1), then settings that load but are dangerous
    /// (a system no port serves, open allow-lists, exposed keys; exit 2 with --strict).
    Check {
        /// The iwf configuration (TOML).
        #[arg(default_value = DEFAULT_CONFIG)]
        config: String,
        /// Exit 2 when there are warnings (for deployment pipelines).
        #[arg(long)]
        strict: bool,
    },
    /// Receipts/s of the receipt path on N worker lcores over DPDK ring ports (net_ring,
    /// frames circulating in memory: no NIC or tap limit); one JSON line per worker count.
    Scaling {
        /// Worker lcore counts, one round each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
        workers: Vec<usize>,
        /// Seconds per round.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Ask the running iwf over its admin endpoint (with the admin token): its legacy
    /// systems, their queues, the running configuration, or a reload; tables, or --json.
    Ctl {
        /// The admin endpoint ([control] admin).
        #[arg(long, default_value = "127.0.0.1:9870")]
        admin: String,
        /// The admin token's file ([control] admin_token_file).
        #[arg(long, default_value = "/etc/iwf/admin.token")]
        token_file: String,
        /// Print the endpoint's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        what: ctl::Ctl,
    },
    /// A message's history from the message records ([records] path and its rotated
    /// files): every step of the message QUERY names, and of its receipts, in time order.
    /// QUERY is a tag (the message_id a legacy system got), a converged imdn.Message-ID,
    /// an SMSC's message_id or a number.
    Trace {
        /// What to look for.
        query: String,
        /// The iwf configuration naming the records ([records] path).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: String,
        /// The records file itself, instead of the configuration's.
        #[arg(long)]
        records: Option<String>,
        /// Print the records as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write iwf's man pages (iwf.1, iwf-run.1, ...) and its shell completions (bash,
    /// zsh, fish) into --out: what the Debian package installs.
    #[command(hide = true)]
    Assets {
        /// The directory to write them into (made if missing).
        #[arg(long)]
        out: String,
    },
    /// Dissect protocol input and print it as JSON (exit 1 with a one-line error on bad input).
    #[command(subcommand)]
    Inspect(Inspect),
    /// Make a random 128-bit tag key (32 hex digits, from the kernel's random source):
    /// written to --out (created with mode 0600, never overwritten) for a
    /// `[[tag.keys]] secret_file`, or printed.
    Keygen {
        /// The key file to create; without it the key is printed.
        #[arg(long)]
        out: Option<String>,
    },
    /// Issue a tag with the configured keys (for tests, load generation and operators).
    Tag {
        /// An iwf configuration file holding the [tag] section with the keys.
        #[arg(long)]
        keys: String,
        /// Legacy system id the tag names.
        #[arg(long)]
        system: u16,
        /// Sequence number.
        #[arg(long, default_value_t = 1)]
        sequence: u32,
        /// Number of SMS segments of the message.
        #[arg(long, default_value_t = 1)]
        segments: u8,
        /// Segment index (0 = the whole message).
        #[arg(long, default_value_t = 0)]
        index: u8,
        /// Receipts asked for: any of delivery, failure, user_ack, comma-separated.
        #[arg(long, default_value = "delivery,failure")]
        receipts: String,
        /// Issue as if at this Unix time instead of now.
        #[arg(long)]
        at: Option<u64>,
        /// The message's legacy originator the tag is signed for: E.164 digits, or a
        /// sender name (receipts can only be addressed to the parties of the tag).
        #[arg(long, default_value = "")]
        originator: String,
        /// The message's converged recipient: E.164 digits.
        #[arg(long, default_value = "")]
        recipient: String,
    },
}

#[derive(Subcommand)]
enum Inspect {
    /// One SMPP PDU given as hexadecimal (spaces and colons allowed).
    Smpp {
        /// The PDU bytes in hex, header included.
        hex: String,
    },
    /// A SIP message from a file (or - for standard input), with its CPIM and IMDN parts.
    Sip {
        /// Path of the file holding the raw message, or - for standard input.
        file: String,
    },
    /// An MM4 message (MMS relay to relay) from a file (or - for standard input):
    /// type, ids, addresses, status codes and parts.
    Mm4 {
        /// Path of the file holding the raw RFC 5322 message, or - for standard input.
        file: String,
    },
    /// SMPP delivery receipt text (the short_message of a receipt).
    Receipt {
        /// The receipt text, e.g. "id:123 sub:001 dlvrd:001 ... stat:DELIVRD err:000 text:hi".
        text: String,
    },
    /// An iwf tag (imdn.Message-ID / SMPP message_id): fields and verification.
    Tag {
        /// The 32-character tag.
        tag: String,
        /// An iwf configuration file holding the [tag] section with the keys.
        #[arg(long)]
        keys: String,
        /// Verify as if at this Unix time instead of now.
        #[arg(long)]
        at: Option<u64>,
        /// The message's legacy originator (digits or sender name): a version 1 tag
        /// verifies only with its own parties.
        #[arg(long, default_value = "")]
        originator: String,
        /// The message's converged recipient (digits).
        #[arg(long, default_value = "")]
        recipient: String,
    },
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|c| !matches!(c, b' ' | b':' | b'\n' | b'\t' | b'\r')).collect();
    let digits = digits.strip_prefix(b"0x").unwrap_or(&digits);
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    digits
        .chunks_exact(2)
        .enumerate()
        .map(|(i, p)| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("not a hex digit pair at offset {}", i * 2))
        })
        .collect()
}

fn read_input(path: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    if path == "-" {
        std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("reading standard input: {e}"))?;
    } else {
        buf = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    }
    Ok(buf)
}

fn inspect(cmd: Inspect) -> Result<serde_json::Value, String> {
    match cmd {
        Inspect::Smpp { hex } => iwf::inspect::smpp::inspect_smpp(&decode_hex(&hex)?),
        Inspect::Sip { file } => iwf::inspect::sip::inspect_sip(&read_input(&file)?),
        Inspect::Mm4 { file } => iwf::inspect::mm4::inspect_mm4(&read_input(&file)?),
        Inspect::Receipt { text } => iwf::inspect::receipt::inspect_receipt(text.as_bytes()),
        Inspect::Tag { tag, keys, at, originator, recipient } => {
            let text = std::fs::read_to_string(&keys).map_err(|e| format!("reading {keys}: {e}"))?;
            let parties = iwf::inspect::tag::parties_arg(&originator, &recipient)?;
            iwf::inspect::tag::inspect_tag(&tag, &text, at.unwrap_or_else(now_unix), &parties)
        }
    }
}

fn issue_tag(cmd: Command) -> Result<String, String> {
    let Command::Tag { keys, system, sequence, segments, index, receipts, at, originator, recipient } = cmd else {
        return Err("not a tag command".into());
    };
    use iwf::tag::{ReceiptRequest, TagFields};
    let text = std::fs::read_to_string(&keys).map_err(|e| format!("reading {keys}: {e}"))?;
    let ring = iwf::control::config::load_keyring(&text).map_err(|e| format!("{keys}: {e}"))?;
    let mut req = ReceiptRequest::NONE;
    for r in receipts.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        req = req.union(match r {
            "delivery" => ReceiptRequest::DELIVERY,
            "failure" => ReceiptRequest::FAILURE,
            "user_ack" => ReceiptRequest::USER_ACK,
            other => return Err(format!("--receipts: unknown receipt `{other}` (delivery, failure, user_ack)")),
        });
    }
    if segments == 0 || index > segments {
        return Err(format!("--index {index} must lie in 0..={segments} and --segments must be at least 1"));
    }
    let fields = TagFields {
        system,
        minutes: TagFields::minutes_at(at.unwrap_or_else(now_unix)),
        sequence,
        segment_index: index,
        segment_count: segments,
        receipts: req,
        parties: iwf::inspect::tag::parties_arg(&originator, &recipient)?,
    };
    ring.encode(&fields).map(|t| t.to_string()).map_err(|e| e.to_string())
}

/// `iwf keygen`: 16 bytes from the kernel's random source as 32 hex digits.
fn keygen(out: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // A random key is never weak; the check guards against a broken random source.
    iwf::tag::TagKey::from_hex_strong(&hex).map_err(|e| format!("the random source gave {e}"))?;
    let Some(path) = out else {
        print_line(&hex);
        return Ok(());
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{path}: {e} (an existing key file is never overwritten)"))?;
    writeln!(f, "{hex}").and_then(|()| f.sync_all()).map_err(|e| format!("{path}: {e}"))?;
    eprintln!("iwf keygen: wrote {path}; name it in [[tag.keys]] as secret_file = \"{path}\"");
    Ok(())
}

/// `iwf check`: the verdict on standard output, one line per finding.
fn check(path: &str, strict: bool) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("iwf check: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match iwf::control::check::check(&text) {
        Err(e) => {
            eprintln!("iwf check: {path}: {e}");
            ExitCode::FAILURE
        }
        Ok(warnings) if warnings.is_empty() => {
            print_line(&format!("{path}: loads, nothing to warn about"));
            ExitCode::SUCCESS
        }
        Ok(warnings) => {
            for w in &warnings {
                print_line(&format!("{path}: warning: {w}"));
            }
            print_line(&format!("{path}: loads, with {} warning(s)", warnings.len()));
            if strict {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Prints a line to standard output; a closed pipe (`iwf inspect ... | head`) is not an error.
fn print_line(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
}

/// `iwf scaling`: the rounds, one JSON line each (efficiency against one worker).
fn scaling(workers: &[usize], seconds: f64) -> ExitCode {
    if workers.is_empty() || workers.contains(&0) || !(0.01..=600.0).contains(&seconds) {
        eprintln!("iwf scaling: --workers needs counts of at least 1, --seconds 0.01..=600");
        return ExitCode::FAILURE;
    }
    match scaling::run(workers, seconds) {
        Ok(rounds) => {
            let one = rounds.iter().find(|r| r.workers == 1).map(|r| r.receipts_per_s());
            let mut ok = true;
            for r in &rounds {
                let rps = r.receipts_per_s();
                let efficiency = one.filter(|o| *o > 0.0).map(|o| rps / (o * r.workers as f64));
                ok &= r.failed == 0 && r.receipts > 0;
                print_line(
                    &serde_json::json!({
                        "figure": "scaling_dpdk_ring",
                        "workers": r.workers,
                        "receipts": r.receipts,
                        "failed": r.failed,
                        "seconds": r.seconds,
                        "receipts_per_s": rps.round(),
                        "efficiency": efficiency.map(|e| (e * 100.0).round() / 100.0),
                    })
                    .to_string(),
                );
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("iwf scaling: a round lost frames or drained nothing");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("iwf scaling: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => match iwf::dataplane::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iwf: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Scaling { workers, seconds } => scaling(&workers, seconds),
        Command::Check { config, strict } => check(&config, strict),
        Command::Assets { out } => match assets(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iwf assets: {out}: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Trace { query, config, records, json } => {
            match ctl::trace(&query, &config, records.as_deref(), json) {
                Ok(text) => {
                    print_line(&text);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("iwf trace: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ctl { admin, token_file, json, what } => match ctl::run(&admin, &token_file, json, what) {
            Ok(text) => {
                print_line(&text);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("iwf ctl: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Keygen { out } => match keygen(out.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iwf keygen: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Inspect(cmd) => match inspect(cmd) {
            Ok(v) => {
                print_line(&serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("iwf inspect: {}", e.replace('\n', " "));
                ExitCode::FAILURE
            }
        },
        cmd @ Command::Tag { .. } => match issue_tag(cmd) {
            Ok(t) => {
                print_line(&t.to_string());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("iwf tag: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
