//! `kube-sim [KUBECONFIG] [--scenario healthy|crash-looping|image-pull-failing]`: a simulated
//! cluster for trying runbooks and kubectl by hand, one branch at a time.
//!
//! Serves a `production` namespace with deployment `api` in the scenario (default
//! `crash-looping`: one pod, 5 restarts, logs, a `BackOff` event; `healthy`: two ready pods;
//! `image-pull-failing`: one pod `Pending` in `ImagePullBackOff`), writes a kubeconfig
//! (default `./kube-sim.kubeconfig`, context `kube-sim`) and prints every request it receives
//! until Ctrl-C. `SIGUSR1` toggles stall mode (requests are accepted and never answered).

use std::path::PathBuf;
use std::time::Duration;

use quell_tests::kube_sim::{KubeSim, Scenario};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut path = PathBuf::from("./kube-sim.kubeconfig");
    let mut scenario = Scenario::crash_looping(5);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--scenario" {
            let name = args.next().unwrap_or_default();
            scenario = Scenario::named(&name).map_err(anyhow::Error::msg)?;
        } else if let Some(name) = arg.strip_prefix("--scenario=") {
            scenario = Scenario::named(name).map_err(anyhow::Error::msg)?;
        } else {
            path = PathBuf::from(arg);
        }
    }
    let sim = KubeSim::start()?;
    sim.add_service("production", "api", scenario);
    sim.write_kubeconfig(&path, "kube-sim")?;
    println!("kube-sim listening on {}", sim.url());
    println!(
        "kubeconfig written to {} (context kube-sim)",
        path.display()
    );
    println!("pid {}: SIGUSR1 toggles stall mode", std::process::id());

    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = usr1.recv() => {
                stalled = !stalled;
                sim.set_stall(stalled);
                println!("stall mode {}", if stalled { "on" } else { "off" });
            }
            _ = tick.tick() => {}
        }
        let requests = sim.requests();
        for r in requests.iter().skip(seen) {
            let query = r
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let content_type = r.content_type.as_deref().unwrap_or("");
            println!("{} {}{query} {content_type} {}", r.method, r.path, r.body);
        }
        seen = requests.len();
    }
    Ok(())
}
