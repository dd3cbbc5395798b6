//! [`Hosts`]: several "machines" on this one, as Linux network namespaces, for tests of a
//! cluster spread over hosts that share nothing but the network.
//!
//! ```text
//!   root namespace: bridge bsbr<pid> 198.18.N.1/24 (the test, and servers it runs there)
//!      ├─ veth ── namespace bse2e-<pid>-0: 198.18.N.2/24 (+ its own loopback)
//!      ├─ veth ── namespace bse2e-<pid>-1: 198.18.N.3/24
//!      └─ ...
//! ```
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range) only. Needs root (and
//! `ip` from iproute2); [`Hosts::create`] returns [`Unavailable`] with the reason when the
//! machine does not allow namespaces, so a test can say why it skips. Everything is removed
//! when `Hosts` is dropped (also on panic), and namespaces that a crashed earlier run left
//! behind (their pid is gone) are removed by the next `create`.

use std::fmt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Prefix of every namespace this module creates: `bse2e-<pid>-<host>`.
const NS_PREFIX: &str = "bse2e-";

/// Why namespaces cannot be used here.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One namespace: a host with one address on the shared bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub namespace: String,
    pub ip: String,
}

impl Host {
    /// `program` to be run inside this host's namespace (`ip netns exec`, which execs it:
    /// the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace]).arg(program);
        c
    }
}

/// The bridge and the namespaces; see the module docs.
pub struct Hosts {
    bridge: String,
    /// The root namespace's address on the bridge (where the test's own servers listen).
    pub gateway: String,
    pub hosts: Vec<Host>,
    /// One set of hosts per test process at a time: names are per process, and a second
    /// set would clear the first one's namespaces as stale. Dropped after the cleanup.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// Taken by [`Hosts::create`] for the life of its hosts.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Hosts {
    /// Why traffic between the namespaces might not pass, if this machine shows a reason:
    /// with `br_netfilter` loaded, bridged packets go through iptables' FORWARD chain, which
    /// Docker or ufw set to DROP.
    pub fn firewall_hint() -> Option<String> {
        let setting =
            std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").ok()?;
        (setting.trim() == "1").then(|| {
            "net.bridge.bridge-nf-call-iptables is 1: iptables filters bridged traffic; if its \
             FORWARD policy is DROP (Docker, ufw), the namespaces cannot reach each other"
                .to_string()
        })
    }

    /// Creates `count` hosts on a fresh bridge, or says why it cannot.
    pub fn create(count: usize) -> Result<Hosts, Unavailable> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable(
                "network namespaces need root (run the suite as root)".into(),
            ));
        }
        if Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(Unavailable("the `ip` command (iproute2) is missing".into()));
        }
        // Tests using hosts run one after the other (each test has its own runtime thread,
        // so waiting here blocks nothing else).
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        remove_stale();
        let pid = std::process::id();
        // A /24 per run, so that concurrent runs do not share a subnet.
        let net = format!("198.18.{}", pid % 250 + 1);
        let mut hosts = Hosts {
            bridge: format!("bsbr{pid}"),
            gateway: format!("{net}.1"),
            hosts: Vec::new(),
            _turn: turn,
        };
        let probe = format!("{NS_PREFIX}{pid}-0");
        if let Err(e) = ip(&["netns", "add", &probe]) {
            return Err(Unavailable(format!(
                "this machine does not allow network namespaces: {e:#}"
            )));
        }
        hosts.hosts.push(Host {
            namespace: probe,
            ip: format!("{net}.2"),
        });
        hosts
            .wire(&net, count)
            .map_err(|e| Unavailable(format!("cannot wire the namespaces: {e:#}")))?;
        Ok(hosts)
    }

    /// Cuts host `i` off the network: the bridge-side end of its link goes down, so what it
    /// sends and what is sent to it is lost (no reset, no refusal), as when a cable or a
    /// switch port fails. Its own loopback keeps working.
    pub fn cut(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.link(i), "down"])
    }

    /// Undoes [`Hosts::cut`].
    pub fn restore(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.link(i), "up"])
    }

    /// The bridge-side veth end of host `i`.
    fn link(&self, i: usize) -> String {
        format!("bsv{}h{i}", std::process::id())
    }

    fn wire(&mut self, net: &str, count: usize) -> Result<()> {
        let pid = std::process::id();
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.gateway),
            "dev",
            &self.bridge,
        ])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for i in 0..count {
            if i > 0 {
                let namespace = format!("{NS_PREFIX}{pid}-{i}");
                ip(&["netns", "add", &namespace])?;
                self.hosts.push(Host {
                    namespace,
                    ip: format!("{net}.{}", i + 2),
                });
            }
            let host = &self.hosts[i];
            let outside = format!("bsv{pid}h{i}");
            let inside = format!("bsp{pid}h{i}");
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &host.namespace])?;
            ip(&["link", "set", &outside, "master", &self.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let ns = host.namespace.as_str();
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                &inside,
            ])?;
            ip(&["-n", ns, "link", "set", &inside, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a veth end deletes the pair; deleting a namespace would too, but the kernel
        // may finish that well after `ip netns del` returns.
        for i in 0..self.hosts.len() {
            let _ = ip(&["link", "del", &format!("bsv{}h{i}", std::process::id())]);
        }
        for host in &self.hosts {
            delete_namespace(&host.namespace);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Kills what still runs in a namespace (deleting it would not), then deletes it.
fn delete_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    if let Err(e) = ip(&["netns", "del", name]) {
        eprintln!("cleaning up: {e:#}");
    }
}

/// Removes the namespaces, bridges and veth ends of earlier runs whose process is gone (and
/// any of this pid's: they belong to a dead process that had it before).
fn remove_stale() {
    let me = std::process::id().to_string();
    let stale = |pid: &str| {
        !pid.is_empty()
            && pid.chars().all(|c| c.is_ascii_digit())
            && (pid == me || !std::path::Path::new("/proc").join(pid).exists())
    };
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(pid) = name
                .strip_prefix(NS_PREFIX)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if stale(pid) {
                eprintln!("removing network namespace {name} left by an earlier run");
                delete_namespace(name);
            }
        }
    }
    // Bridges `bsbr<pid>` and veth ends `bsv<pid>h<i>`.
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
            continue;
        };
        let pid = if let Some(rest) = name.strip_prefix("bsbr") {
            rest
        } else if let Some(rest) = name.strip_prefix("bsv") {
            rest.split('h').next().unwrap_or_default()
        } else {
            continue;
        };
        if stale(pid) {
            let _ = ip(&["link", "del", name]);
        }
    }
}
