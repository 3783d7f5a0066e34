//! `dasan`: CLI → config → engine → shutdown.

use clap::{Parser, Subcommand};
use dasan::config::{Config, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, DEMO_PASSWORD};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "dasan",
    version,
    about = "Zero-ARS IVR and ACD engine: the caller rings a human"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine (the embedded default configuration unless --config is given).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// SIP listen address, UDP and TCP (overrides the config).
        #[arg(long)]
        sip_listen: Option<SocketAddr>,
        /// HTTP listen address (overrides the config).
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// Data directory (overrides the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a configuration/dialplan file; prints `file:line: message` on error.
    CheckConfig { path: PathBuf },
    /// Simulate the 120 centre's day (22,000 Korean and 87 foreign-language calls, the
    /// dialplan's queues and bilingual counsellors) under each routing policy, through the
    /// engine's own router, and print service level, ASA, abandonment and occupancy per
    /// queue with 95 % confidence intervals over seeds.
    Simulate {
        /// The dialplan whose queues and agents to model (default: the embedded one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Days simulated per policy, each with its own seed.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print an agent's digest hashes (password_ha1_md5, password_ha1_sha256) for a
    /// password typed on the terminal (not echoed) or given on standard input, to put in
    /// the config instead of the password.
    Passwd {
        agent: String,
        /// The digest realm (default: the config's sip.realm, else "dasan").
        #[arg(long)]
        realm: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The counselling knowledge base.
    Kb {
        #[command(subcommand)]
        cmd: KbCmd,
    },
}

#[derive(Subcommand)]
enum KbCmd {
    /// Import entries from a CSV (header: title,body,department,contact,tags,updated_at)
    /// or JSON array file; an entry with an existing title replaces it.
    Import {
        file: PathBuf,
        /// Data directory holding kb.db (default: the config's, ./dasan-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Search as the agents' API does.
    Search {
        query: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Why a command-line action failed (printed as `dasan: …`).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] dasan::config::ConfigError),
    #[error(transparent)]
    Kb(#[from] dasan::kb::KbError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn kb_path(config: Option<&PathBuf>, data_dir: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let cfg = match config {
        Some(p) => Config::load(p),
        None => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME),
    }?;
    let dir = data_dir.unwrap_or(cfg.data.dir);
    std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    Ok(dir.join("kb.db"))
}

fn kb_cmd(cmd: KbCmd) -> Result<String, CliError> {
    match cmd {
        KbCmd::Import {
            file,
            data_dir,
            config,
        } => {
            let path = kb_path(config.as_ref(), data_dir)?;
            let text = std::fs::read_to_string(&file).map_err(io_at(&file))?;
            let entries = dasan::kb::parse_file(&file.display().to_string(), &text)?;
            let mut kb = dasan::kb::Kb::open(&path)?;
            let n = kb.upsert(&entries)?;
            Ok(format!(
                "{}: imported {n} entries into {} ({} in total)",
                file.display(),
                path.display(),
                kb.count()?
            ))
        }
        KbCmd::Search {
            query,
            data_dir,
            config,
        } => {
            let path = kb_path(config.as_ref(), data_dir)?;
            let kb = dasan::kb::Kb::open(&path)?;
            let hits = kb.search(&query, 10)?;
            Ok(hits
                .iter()
                .map(|h| {
                    format!(
                        "{}\t{}\t{}",
                        h.entry.id.unwrap_or(0),
                        h.entry.title,
                        h.entry.department
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// The TOML lines for an agent's hashed password.
fn passwd(
    agent: &str,
    realm: Option<String>,
    config: Option<&PathBuf>,
) -> Result<String, Box<dyn std::error::Error>> {
    let valid = !agent.is_empty()
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+".contains(&b));
    if !valid {
        return Err(format!("'{agent}' is not an agent id (letters, digits, . _ +)").into());
    }
    let realm = match (realm, config) {
        (Some(r), _) => r,
        (None, Some(p)) => Config::load(p)?.sip.realm,
        (None, None) => dasan::config::SipConfig::default().realm,
    };
    let password = read_password(&format!("password for agent {agent}: "))?;
    if password.is_empty() {
        return Err("empty password".into());
    }
    Ok(format!(
        "# agent {agent}, realm \"{realm}\"\nids = \"{agent}\"\npassword_ha1_md5 = \"{}\"\npassword_ha1_sha256 = \"{}\"",
        dasan::config::ha1(false, agent, &realm, &password),
        dasan::config::ha1(true, agent, &realm, &password)
    ))
}

/// One line from the terminal with echo off, or from standard input when it is not one.
fn read_password(prompt: &str) -> std::io::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut saved: Option<libc::termios> = None;
    if tty {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        // SAFETY: tcgetattr/tcsetattr read and write the termios struct we own, on fd 0.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) == 0 {
                saved = Some(t);
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: as above, restoring the settings read before.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        eprintln!();
    }
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `dasan simulate`: every policy on the 120 day, one table, then the verdict against the
/// issue's target (foreign-language SL ≥ 80 % with the Korean queue at most 1 point below
/// the plain routing's).
fn simulate(config: Option<&std::path::Path>, seeds: u64, first: u64) -> Result<(), String> {
    use dasan::sim::{day_120, model, run_seeds, Policy};
    if !(1..=1000).contains(&seeds) {
        return Err("--seeds must be 1 to 1000".into());
    }
    let cfg = match config {
        Some(p) => Config::load(p),
        None => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME),
    }
    .map_err(|e| e.to_string())?;
    let settings = cfg.engine();
    let seeds: Vec<u64> = (first..first + seeds).collect();
    if day_120(settings, Policy::Dialplan, first).is_none() {
        return Err(
            "the dialplan needs a Korean queue (skill \"ko\", open all day), queues \
                    with skills en, zh, ja, vi and mn, and a Korean-only agent"
                .into(),
        );
    }
    println!(
        "120 day: {} Korean + {} foreign-language calls (en/zh/ja/vi/mn {:?}), handle {} s / {} s, \
         patience {} s (exponential); Korean-only counsellors staffed by the hour for {:.0} % \
         in 20 s by Erlang C, the dialplan's bilingual counsellors on shift while their queue \
         is open. {} days per policy (seeds {}..={}); ± is the 95 % confidence interval.",
        model::KOREAN_PER_DAY,
        model::FOREIGN_PER_DAY,
        model::FOREIGN_SPLIT.map(|(_, s)| s),
        model::HANDLE_KO_S,
        model::HANDLE_FOREIGN_S,
        model::PATIENCE_S,
        model::PLAN_SL * 100.0,
        seeds.len(),
        seeds[0],
        seeds[seeds.len() - 1],
    );
    println!(
        "{:<30} {:<8} {:>8} {:>15} {:>14} {:>13} {:>13}",
        "policy", "queue", "calls/d", "SL(20s) %", "ASA s", "abandon %", "occupancy %"
    );
    let started = std::time::Instant::now();
    let mut total_calls = 0u64;
    let mut verdicts = Vec::new();
    for policy in Policy::all() {
        let (rows, calls) = run_seeds(
            |s| day_120(settings, policy, s).expect("checked above"),
            &seeds,
        );
        total_calls += calls;
        for r in &rows {
            println!(
                "{:<30} {:<8} {:>8.0} {:>8.1} ±{:>4.1} {:>7.1} ±{:>4.1} {:>6.1} ±{:>4.1} {:>6.1} ±{:>4.1}",
                policy.name(),
                r.name,
                r.offered,
                r.service_level.mean * 100.0,
                r.service_level.ci95 * 100.0,
                r.asa_s.mean,
                r.asa_s.ci95,
                r.abandon_rate.mean * 100.0,
                r.abandon_rate.ci95 * 100.0,
                r.occupancy.mean * 100.0,
                r.occupancy.ci95 * 100.0,
            );
        }
        let korean = rows.first().map_or(0.0, |r| r.service_level.mean);
        let foreign = rows.last().map_or(0.0, |r| r.service_level.mean);
        verdicts.push((policy, korean, foreign));
    }
    let secs = started.elapsed().as_secs_f64();
    let plain_ko = verdicts
        .iter()
        .find(|(p, _, _)| *p == Policy::Plain)
        .map_or(0.0, |v| v.1);
    println!();
    println!(
        "target: foreign SL >= 80 % with Korean SL at most 1 point below plain ({:.1} %)",
        plain_ko * 100.0
    );
    for (p, ko, fo) in &verdicts {
        let ok = *fo >= 0.80 && *ko >= plain_ko - 0.01;
        println!(
            "  {:<30} Korean {:>5.1} % ({:+.1}), foreign {:>5.1} %  {}",
            p.name(),
            ko * 100.0,
            (ko - plain_ko) * 100.0,
            fo * 100.0,
            if ok { "meets the target" } else { "-" }
        );
    }
    println!(
        "simulated {total_calls} calls in {secs:.2} s: {:.0} calls/s",
        total_calls as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// The media port ranges against this host's ephemeral range (read at start: the kernel's
/// setting, not the config's).
fn port_warnings(cfg: &Config) -> Vec<String> {
    use dasan::media::ports::{ephemeral_ports, overlap_warning};
    let Some(eph) = ephemeral_ports() else {
        return Vec::new();
    };
    let m = &cfg.media;
    [
        ("[media] rtp_port_min/max", (m.rtp_port_min, m.rtp_port_max)),
        (
            "[media] webrtc_port_min/max",
            (m.webrtc_port_min, m.webrtc_port_max),
        ),
    ]
    .into_iter()
    .filter_map(|(name, r)| overlap_warning(name, r, eph))
    .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Simulate {
            config,
            seeds,
            seed,
        } => match simulate(config.as_deref(), seeds, seed) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dasan: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Passwd {
            agent,
            realm,
            config,
        } => match passwd(&agent, realm, config.as_ref()) {
            Ok(lines) => {
                println!("{lines}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dasan: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Kb { cmd } => match kb_cmd(cmd) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dasan: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::CheckConfig { path } => match Config::load(&path) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    eprintln!("{w}");
                }
                for w in port_warnings(&cfg) {
                    eprintln!("{}: {w}", path.display());
                }
                println!(
                    "{}: ok ({} agents, {} queues, {} routes)",
                    path.display(),
                    cfg.agent_specs().len(),
                    cfg.queues.len(),
                    cfg.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run {
            config,
            sip_listen,
            http_listen,
            data_dir,
        } => {
            tracing_subscriber::fmt()
                // Colour only on a terminal: a log file is read by tools (fail2ban).
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter({
                    // The WebRTC stack logs every ICE and DTLS step at info: only its
                    // warnings unless DASAN_LOG names it.
                    let level = std::env::var("DASAN_LOG").unwrap_or_else(|_| "info".into());
                    let quiet = if level.contains("rtc") {
                        String::new()
                    } else {
                        ",rtc=warn,rtc_ice=warn,rtc_dtls=error,rtc_srtp=warn,webrtc=warn".into()
                    };
                    tracing_subscriber::EnvFilter::try_new(format!("{level}{quiet}"))
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
                })
                .init();
            let loaded = match &config {
                Some(p) => Config::load(p),
                None => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME),
            };
            let mut cfg = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(a) = sip_listen {
                cfg.sip.listen = a;
                cfg.sip.advertise = None;
            }
            if let Some(a) = http_listen {
                cfg.http.listen = a;
            }
            if let Some(d) = data_dir {
                cfg.data.dir = d;
            }
            if let Err(e) = cfg.check_runtime() {
                eprintln!("dasan: {e}");
                return ExitCode::FAILURE;
            }
            for w in cfg.warnings() {
                tracing::warn!("{w}");
            }
            for w in port_warnings(&cfg) {
                tracing::warn!("{w}");
            }
            let exposed = !cfg.sip.listen.ip().is_loopback()
                || !cfg.http.listen.ip().is_loopback()
                || cfg.sip.tls_listen.is_some_and(|t| !t.ip().is_loopback());
            let plain: Vec<&str> = cfg
                .agents
                .iter()
                .filter(|g| !g.password.is_empty())
                .map(|g| g.ids.get_ref().as_str())
                .collect();
            if exposed && !plain.is_empty() {
                tracing::warn!(
                    agents = %plain.join(", "),
                    "agents' passwords are in the config in clear while listening beyond loopback: replace each with password_ha1_md5/password_ha1_sha256 (`dasan passwd AGENT`)"
                );
            }
            if cfg.uses_demo_credentials() {
                tracing::warn!(
                    "demo agents with password '{DEMO_PASSWORD}' are active: for loopback testing only"
                );
            }
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dasan: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    // Records, recordings, tokens and keys are personal data or secrets: everything the
    // engine creates is its user's alone (files 0600, directories 0700).
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(&cfg.data.dir)
        .map_err(|e| format!("data directory {}: {e}", cfg.data.dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // A directory from an older version (or made by hand) is closed too.
        std::fs::set_permissions(&cfg.data.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("data directory {}: {e}", cfg.data.dir.display()))?;
        // And what such a version left in it (records, knowledge base, tokens, the
        // recordings and tls directories): the owner's alone. Best effort: a file we
        // cannot change is still behind the 0700 directory.
        if let Ok(entries) = std::fs::read_dir(&cfg.data.dir) {
            for e in entries.flatten() {
                let mode = match e.file_type() {
                    Ok(t) if t.is_dir() => 0o700,
                    Ok(t) if t.is_file() => 0o600,
                    _ => continue,
                };
                let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode));
            }
        }
    }
    let prompts = Arc::new(dasan::driver::media::Prompts::load(&cfg)?);
    raise_fd_limit();
    let recordings = cfg.data.dir.join("recordings");
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let (db, store) = open_records(&cfg, unix_ms)?;
    let kb_db = open_kb(&cfg)?;
    let auth = load_tokens(&cfg)?;
    let sip_tls = sip_tls(&cfg)?;
    let http_tls = http_tls(&cfg)?;
    let threads = cfg.runtime.threads();
    tracing::info!(threads, "worker threads");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let metrics = Arc::new(dasan::metrics::Metrics::new()?);
        let (engine_handle, inbox) = dasan::driver::EngineHandle::channel();
        let local_rtp = dasan::runtime::LocalRtp::default();
        let app = Arc::new(dasan::http::AppState {
            engine: engine_handle,
            metrics: metrics.clone(),
            tokens: auth,
            sessions: dasan::http::Sessions::new(std::time::Duration::from_secs(
                cfg.http.session_ttl_s.max(1) as u64,
            )),
            records_db: Some(db.clone()),
            kb_db: Some(kb_db),
            metrics_token: cfg.http.metrics_token.as_ref().map(|t| t.get_ref().clone()),
            chat_limits: Default::default(),
            reports: dasan::http::reports::ReportSettings::from_config(&cfg),
        });
        let web = Arc::new(dasan::web::WebState::from_config(
            &cfg,
            app.clone(),
            local_rtp.clone(),
        ));
        tokio::spawn(dasan::web::sample_history(web.clone()));
        let routes = dasan::http::router(app).merge(dasan::web::router(web));
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (sink, writer) = dasan::records::writer::start(
            store,
            cfg.data.record_queue,
            std::time::Duration::from_millis(cfg.data.flush_interval_ms),
            metrics.clone(),
        );
        let engine = dasan::b2bua::Engine::new(
            &cfg,
            metrics.clone(),
            std::time::Instant::now(),
            unix,
            dasan::sip::build::Ids::from_seed(dasan::util::entropy()),
        )
        .with_unix_ms(unix_ms);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (phase_tx, phase_rx) = tokio::sync::watch::channel(dasan::driver::Phase::Run);
        let drain_timeout = std::time::Duration::from_secs(cfg.sip.drain_timeout_s as u64);
        let http_listen = cfg.http.listen;
        let reloadable_http = http_tls.clone();
        let http = {
            let rx = stop_rx.clone();
            let m = metrics.clone();
            let limits = dasan::http::HttpLimits::default();
            tokio::spawn(async move {
                dasan::http::serve(http_listen, routes, limits, Some(m), http_tls, rx).await
            })
        };
        let mut sockets = dasan::driver::SocketSettings::from_config(&cfg.sip);
        let kfwd = kernel_forwarding(&cfg.media, cfg.media.ip.unwrap_or(cfg.sip.listen.ip()));
        tokio::spawn(reload_on_sighup(
            sip_tls
                .iter()
                .map(|t| ("SIP", t.identity.clone()))
                .chain(reloadable_http.map(|t| ("HTTPS", t)))
                .collect(),
        ));
        sockets.tls = sip_tls;
        let sip = tokio::spawn(dasan::driver::run(
            engine,
            cfg.sip.listen,
            sockets,
            inbox,
            dasan::driver::Plumbing {
                metrics,
                prompts,
                local_rtp,
                recordings,
                records: Some(sink),
                kfwd,
            },
            phase_rx,
        ));
        tokio::spawn(async move {
            use dasan::driver::Phase;
            if shutdown_signal().await == Signal::Term {
                tracing::info!("SIGTERM: draining for up to {drain_timeout:?}");
                let _ = phase_tx.send(Phase::Drain);
                tokio::select! {
                    _ = tokio::time::sleep(drain_timeout) => tracing::info!("drain deadline"),
                    _ = shutdown_signal() => {}
                }
            }
            tracing::info!("shutting down");
            let _ = phase_tx.send(Phase::Stop);
            let _ = stop_tx.send(true);
        });
        tokio::select! {
            r = sip => { r??; }
            r = http => {
                r?.map_err(|e| format!("HTTP on {http_listen}: {e}"))?;
            }
        }
        // The driver is gone and with it the sink: the writer commits what is queued.
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// The record store, with calls left in progress by the last run marked interrupted.
fn open_records(
    cfg: &Config,
    unix_ms: i64,
) -> Result<
    (
        dasan::records::StoreLocation,
        Box<dyn dasan::records::Store>,
    ),
    Box<dyn std::error::Error>,
> {
    let db = dasan::records::StoreLocation::from_config(cfg);
    let mut store = db.open()?;
    let interrupted = store.mark_interrupted(unix_ms)?;
    if interrupted > 0 {
        tracing::warn!(
            calls = interrupted,
            "calls in progress when the engine last stopped are recorded as interrupted"
        );
    }
    tracing::info!(db = %db.describe(), "consultation records");
    Ok((db, store))
}

/// The knowledge base file, loaded with the sample when empty.
fn open_kb(cfg: &Config) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let kb_db = cfg.data.dir.join("kb.db");
    let mut kb = dasan::kb::Kb::open(&kb_db)?;
    if kb.count()? == 0 {
        let sample = dasan::kb::parse_file("kb/sample.json", dasan::kb::SAMPLE)?;
        let n = kb.upsert(&sample)?;
        tracing::info!(
            "knowledge base was empty: loaded the {n}-entry sample (replace with `dasan kb import FILE`)"
        );
    }
    Ok(kb_db)
}

/// The HTTPS identity when `[http]` asks for TLS.
fn http_tls(
    cfg: &Config,
) -> Result<Option<Arc<dasan::runtime::tls::Reloadable>>, Box<dyn std::error::Error>> {
    if !cfg.http.https() {
        if !cfg.http.listen.ip().is_loopback() {
            tracing::warn!(
                "[http] insecure = true: plain HTTP on {}, agents' passwords and API tokens cross the network in clear",
                cfg.http.listen
            );
        }
        return Ok(None);
    }
    let hosts = vec![cfg.http.listen.ip().to_string()];
    let identity = load_identity(
        "HTTPS",
        "http",
        cfg.http.tls_cert.as_deref(),
        cfg.http.tls_key.as_deref(),
        cfg,
        &hosts,
        None,
    )?;
    Ok(Some(Arc::new(identity)))
}

/// A listener's certificate: the configured files, or a self-signed pair in the data
/// directory, said loudly with the fingerprint clients can pin.
fn load_identity(
    what: &str,
    name: &str,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
    cfg: &Config,
    hosts: &[String],
    clients: Option<Arc<dasan::runtime::tls::PinnedClients>>,
) -> Result<dasan::runtime::tls::Reloadable, Box<dyn std::error::Error>> {
    use dasan::runtime::tls::{Origin, Reloadable, TlsFiles};
    let (files, origin) = TlsFiles::resolve(cert, key, &cfg.data.dir, name, hosts)?;
    let identity = Reloadable::with_clients(files, clients)?;
    let fp = identity.files().fingerprint()?;
    let path = identity.files().cert.display().to_string();
    match origin {
        Origin::Generated => tracing::warn!(
            "{what}: no certificate configured: generated a self-signed certificate {path} (SHA-256 {fp}); clients must trust it or pin this fingerprint"
        ),
        Origin::Existing => tracing::warn!(
            "{what}: no certificate configured: using the self-signed certificate {path} (SHA-256 {fp})"
        ),
        Origin::Configured => tracing::info!("{what} certificate {path} (SHA-256 {fp})"),
    }
    Ok(identity)
}

/// The SIP over TLS listener, with its certificate loaded (or generated: said loudly, with
/// the fingerprint phones can pin).
fn sip_tls(cfg: &Config) -> Result<Option<dasan::driver::SipTls>, Box<dyn std::error::Error>> {
    let Some(listen) = cfg.sip.tls_listen else {
        return Ok(None);
    };
    let hosts: Vec<String> = cfg
        .advertised_sip_tls()
        .map(|a| a.ip().to_string())
        .into_iter()
        .collect();
    let pins = cfg.tls_client_pins();
    let ca = cfg.sip.tls_client_ca.as_deref();
    let clients = if pins.is_empty() && ca.is_none() {
        None
    } else {
        tracing::info!(
            pinned = pins.len(),
            ca = ?ca,
            "SIP over TLS asks clients for a certificate: trunks' are pinned or CA-issued, phones need none"
        );
        let mut c = dasan::runtime::tls::PinnedClients::new(pins);
        if let Some(path) = ca {
            c = c.with_ca(path)?;
        }
        Some(Arc::new(c))
    };
    let identity = load_identity(
        "SIP over TLS",
        "sip",
        cfg.sip.tls_cert.as_deref(),
        cfg.sip.tls_key.as_deref(),
        cfg,
        &hosts,
        clients,
    )?;
    Ok(Some(dasan::driver::SipTls {
        listen,
        identity: Arc::new(identity),
        handshake_timeout: std::time::Duration::from_secs(cfg.sip.tls_handshake_timeout_s.into()),
    }))
}

/// SIGHUP rereads every listener's certificate for new connections; a file that does not
/// load leaves that listener on its old certificate.
async fn reload_on_sighup(identities: Vec<(&'static str, Arc<dasan::runtime::tls::Reloadable>)>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP: certificates reload only on restart");
            return;
        };
        while hup.recv().await.is_some() {
            for (name, id) in &identities {
                match id.reload() {
                    Ok(fp) => tracing::info!(
                        "SIGHUP: {name} TLS certificate reloaded from {} (SHA-256 {fp}) for new connections",
                        id.files().cert.display()
                    ),
                    Err(e) => tracing::error!(
                        "SIGHUP: {name} TLS certificate not reloaded, keeping the old one: {e}"
                    ),
                }
            }
        }
    }
}

/// API tokens, saying where the supervisor's came from.
fn load_tokens(cfg: &Config) -> Result<dasan::http::auth::Tokens, CliError> {
    use dasan::http::auth::Source;
    let (auth, source) =
        dasan::http::auth::Tokens::load(cfg, std::env::var("DASAN_API_TOKEN").ok(), &cfg.data.dir)
            .map_err(io_at(&cfg.data.dir.join("api-token")))?;
    match source {
        Source::Generated(p) => tracing::warn!(
            "generated a supervisor API token: {} (send it as 'Authorization: Bearer …')",
            p.display()
        ),
        Source::Existing(p) => tracing::info!("supervisor API token in {}", p.display()),
        Source::Environment => tracing::info!("supervisor API token from DASAN_API_TOKEN"),
        Source::Config => tracing::info!("API tokens from the config"),
    }
    Ok(auth)
}

/// Each anchored call holds four sockets: lift the soft file limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGINT: stop now.
    Int,
    /// SIGTERM: drain first.
    Term,
}

async fn shutdown_signal() -> Signal {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return Signal::Int;
                }
            };
        tokio::select! {
            _ = ctrl_c => Signal::Int,
            _ = term.recv() => Signal::Term,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        Signal::Int
    }
}

/// `[media] kernel_forward`: the program loaded and attached, or a warning and user-space
/// relaying (calls go on either way).
fn kernel_forwarding(
    media: &dasan::config::MediaConfig,
    ip: std::net::IpAddr,
) -> Option<std::sync::Arc<dasan::driver::kfwd::Kfwd>> {
    if !media.kernel_forward {
        return None;
    }
    // Media on a loopback address only ever arrives on `lo`.
    let ifaces = if ip.is_loopback() {
        vec![(1, "lo".to_string())]
    } else {
        dasan::driver::kfwd::interfaces()
    };
    match dasan::driver::kfwd::Kfwd::open(ifaces) {
        Ok(k) => {
            let names: Vec<&str> = k.ifaces.iter().map(|(_, n)| n.as_str()).collect();
            tracing::info!(interfaces = ?names, "bridged RTP is forwarded in the kernel");
            Some(std::sync::Arc::new(k))
        }
        Err(e) => {
            tracing::warn!(
                "[media] kernel_forward: not available ({e}); it needs root (CAP_BPF and CAP_NET_ADMIN) and Linux 6.6 or later; RTP is relayed in user space"
            );
            None
        }
    }
}
