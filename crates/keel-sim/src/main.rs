//! `keel-sim`: runs seeds of the replication simulation and prints what
//! they found. `--seeds N` runs N seeds (from `--from`, or from the clock)
//! and prints seeds per second and simulated seconds per wall-clock second;
//! `--seed N` replays one run bit for bit, `--trace` prints its events;
//! `--plant BUG` runs with a planted bug (see `keel_sim::Plant`);
//! `--secs S` stops starting new seeds after S wall-clock seconds;
//! `--brokers N` fixes the cluster size (else each seed draws 3 or 5);
//! `--scenario NAME [--planted]` runs a named scenario.

use std::process::ExitCode;
use std::time::Instant;

use keel_sim::{Config, Plant, Sim};

/// `println!` that ends the program quietly when stdout is closed (`| head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds: u64 = 100;
    let mut from: Option<u64> = None;
    let mut one: Option<u64> = None;
    let mut trace = false;
    let mut plant = None;
    let mut secs: Option<f64> = None;
    let mut scenario: Option<String> = None;
    let mut planted = false;
    let mut brokers: Option<i32> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| -> String {
            match it.next() {
                Some(v) => v.clone(),
                None => {
                    eprintln!("keel-sim: {a} needs {what}");
                    std::process::exit(2);
                }
            }
        };
        match a.as_str() {
            "--seeds" => seeds = parse(&value("a count")),
            "--from" => from = Some(parse(&value("a seed"))),
            "--seed" => one = Some(parse(&value("a seed"))),
            "--secs" => secs = Some(parse::<f64>(&value("seconds"))),
            "--trace" => trace = true,
            "--planted" => planted = true,
            "--brokers" => brokers = Some(parse(&value("3 or 5"))),
            "--scenario" => scenario = Some(value("a scenario's name")),
            "--plant" => {
                let v = value("a bug's name");
                plant = Some(Plant::parse(&v).unwrap_or_else(|| {
                    let names: Vec<_> = Plant::ALL.iter().map(|p| p.name()).collect();
                    eprintln!(
                        "keel-sim: no planted bug {v:?}; there are: {}",
                        names.join(", ")
                    );
                    std::process::exit(2);
                }));
            }
            "-h" | "--help" => {
                out!(
                    "keel-sim [--seeds N] [--from SEED] [--secs S] [--brokers 3|5] [--seed SEED [--trace]] [--plant BUG]\n\
                     keel-sim --scenario NAME [--planted] [--seeds N | --seed SEED [--trace]]"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("keel-sim: unknown argument {other:?} (see --help)");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(name) = scenario {
        let all = keel_sim::scenarios();
        let Some(s) = all.iter().find(|s| s.name == name) else {
            let names: Vec<_> = all.iter().map(|s| s.name).collect();
            eprintln!(
                "keel-sim: no scenario {name:?}; there are: {}",
                names.join(", ")
            );
            return ExitCode::from(2);
        };
        let first = from.or(one).unwrap_or(1);
        let count = if one.is_some() { 1 } else { seeds };
        let mut bad = 0;
        for seed in first..first + count {
            let r = keel_sim::run_scenario(s, seed, planted, trace);
            for line in &r.trace {
                out!("{line}");
            }
            if !r.violations.is_empty() {
                bad += 1;
                out!("VIOLATION {name} seed {seed}: {}", r.violations[0]);
            }
        }
        out!(
            "{name}: {bad} of {count} seeds with violations{}",
            if planted { " (its bug planted)" } else { "" }
        );
        return if bad == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Some(seed) = one {
        let r = run_seed(seed, plant, brokers, trace);
        for line in &r.trace {
            out!("{line}");
        }
        out!(
            "seed {seed}: {} simulated ms, {} events, {} records acknowledged, {} leader changes, {} crashes, {} cuts",
            r.sim_ms, r.events, r.acked, r.leader_changes, r.crashes, r.cuts
        );
        for v in &r.violations {
            out!("VIOLATION seed {seed}: {v}");
        }
        return if r.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let start_seed = from.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000_000)
    });
    out!(
        "keel-sim: seeds {start_seed}..{} {}",
        start_seed + seeds,
        plant.map_or(String::new(), |p| format!("with {} planted", p.name()))
    );
    let t0 = Instant::now();
    let (mut ran, mut sim_ms, mut bad) = (0u64, 0i64, 0u64);
    for seed in start_seed..start_seed + seeds {
        if secs.is_some_and(|s| t0.elapsed().as_secs_f64() > s) {
            break;
        }
        let r = run_seed(seed, plant, brokers, false);
        ran += 1;
        sim_ms += r.sim_ms;
        if !r.violations.is_empty() {
            bad += 1;
            for v in r.violations.iter().take(3) {
                out!("VIOLATION seed {seed}: {v}");
            }
            let flags = brokers.map_or(String::new(), |n| format!(" --brokers {n}"))
                + &plant.map_or(String::new(), |p| format!(" --plant {}", p.name()));
            out!("  replay: cargo run -p keel-sim --release -- --seed {seed}{flags} --trace");
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    out!(
        "keel-sim: {ran} seeds ({start_seed}..{}) in {wall:.1}s: {:.1} seeds/s, {:.0} simulated s per wall s; {bad} with violations",
        start_seed + ran,
        ran as f64 / wall,
        sim_ms as f64 / 1000.0 / wall
    );
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Seed `seed`'s run: its drawn configuration, with the options' overrides.
fn run_seed(
    seed: u64,
    plant: Option<Plant>,
    brokers: Option<i32>,
    trace: bool,
) -> keel_sim::Report {
    let mut cfg = Config::for_seed(seed);
    cfg.plant = plant;
    if let Some(n) = brokers {
        cfg.brokers = n;
    }
    Sim::new(seed, cfg, trace).run()
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("keel-sim: {s:?} is not a number");
        std::process::exit(2);
    })
}
