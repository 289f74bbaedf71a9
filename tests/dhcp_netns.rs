//! Real broadcast on real interfaces, inside network namespaces this test
//! creates (names carry the process id) and deletes:
//!
//! - our proxyDHCP beside busybox `udhcpd` (which gives the address), and
//!   our client engine finding both (PXE 2.1 §2.2.2);
//! - ISC `dhclient` getting, renewing… and releasing a lease from our full
//!   mode, with the lease in our log.
//!
//! Needs root, `ip`, `udhcpd`, `dhclient`. When those are missing the tests
//! are listed as ignored with the reason (build.rs decides); with
//! `PREBOOT_CI=1` they fail instead.
//!
//! The servers and the client run in child processes (`ip netns exec` on
//! this test binary, the test `netns_child` picks its role from the
//! environment).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use preboot::dhcp::BootArch;
use preboot::dhcp::client::ClientConfig;
use preboot::dhcp::config::Pool;
use preboot::driver::dhcp::{
    DhcpClientConfig, DhcpServer, DhcpServerConfig, LeaseFile, MenuPolicy, run_client,
};

// `unavailable`: a prerequisite is missing although the build did not mark
// the test ignored (forced, or `PREBOOT_CI=1`): fail, saying which.
mod boot_server_support;
use boot_server_support::unavailable;

#[path = "support/netns.rs"]
mod netns;
use netns::{have, sh};

/// Namespaces and links; deleted on drop however the test ends.
struct Net {
    names: Vec<String>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A hub namespace with bridge `br0` (address `hub_addr`), and one
/// namespace per member with `eth0` plugged into the bridge.
fn topology(
    tag: &str,
    hub_addr: Option<&str>,
    members: &[(&str, Option<&str>)],
) -> (Net, String, Vec<String>) {
    let pid = std::process::id();
    let hub = format!("pb{tag}{pid}h");
    let mut net = Net {
        names: vec![hub.clone()],
    };
    sh(&format!("ip netns add {hub}"));
    sh(&format!(
        "ip -n {hub} link add br0 type bridge && ip -n {hub} link set br0 up && ip -n {hub} link set lo up"
    ));
    if let Some(a) = hub_addr {
        sh(&format!("ip -n {hub} addr add {a} dev br0"));
    }
    let mut names = Vec::new();
    for (i, (role, addr)) in members.iter().enumerate() {
        let ns = format!("pb{tag}{pid}{role}");
        net.names.push(ns.clone());
        sh(&format!("ip netns add {ns}"));
        let (a, b) = (format!("pb{tag}{pid}a{i}"), format!("pb{tag}{pid}b{i}"));
        sh(&format!("ip link add {a} type veth peer name {b}"));
        sh(&format!(
            "ip link set {a} netns {ns} && ip -n {ns} link set {a} name eth0"
        ));
        sh(&format!(
            "ip link set {b} netns {hub} && ip -n {hub} link set {b} master br0 && ip -n {hub} link set {b} up"
        ));
        sh(&format!(
            "ip -n {ns} link set eth0 up && ip -n {ns} link set lo up"
        ));
        if let Some(a) = addr {
            sh(&format!("ip -n {ns} addr add {a} dev eth0"));
        }
        names.push(ns);
    }
    (net, hub, names)
}

/// Kills (SIGKILL) and reaps a child however the test ends.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child_in(ns: &str, role: &str, dir: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args(["netns_child", "--exact", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env("PREBOOT_NETNS_ROLE", role)
        .env("PREBOOT_NETNS_DIR", dir);
    c
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The roles run inside the namespaces.
#[test]
#[ignore = "role: run inside a network namespace by the tests below"]
fn netns_child() {
    let Ok(role) = std::env::var("PREBOOT_NETNS_ROLE") else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var("PREBOOT_NETNS_DIR").unwrap());
    match role.as_str() {
        "proxy" => {
            let mut c = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
            c.interface = Some("eth0".into());
            c.boot_files
                .files
                .insert(BootArch::Bios, "pxelinux.0".into());
            c.boot_files
                .files
                .insert(BootArch::UefiX64, "grubx64.efi".into());
            c.menu = MenuPolicy::OnKeyPress { timeout_secs: 2 };
            let s = DhcpServer::bind(c).unwrap();
            std::fs::write(dir.join("proxy.ready"), "").unwrap();
            s.run().unwrap();
        }
        "full" => {
            let mut c = DhcpServerConfig::full(
                Ipv4Addr::new(192, 168, 78, 1),
                Pool {
                    subnet: Ipv4Addr::new(192, 168, 78, 0),
                    prefix_len: 24,
                    start: Ipv4Addr::new(192, 168, 78, 100),
                    end: Ipv4Addr::new(192, 168, 78, 150),
                    router: Some(Ipv4Addr::new(192, 168, 78, 1)),
                    dns: Default::default(),
                    lease_time: Duration::from_secs(600),
                },
            );
            c.interface = Some("eth0".into());
            c.boot_addr = None;
            c.lease_file = Some(dir.join("leases"));
            let s = DhcpServer::bind(c).unwrap();
            std::fs::write(dir.join("full.ready"), "").unwrap();
            s.run().unwrap();
        }
        "client" => {
            let mut cc = DhcpClientConfig::new(
                ClientConfig::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], 0, [5; 16]),
                std::process::id(),
            );
            cc.interface = Some("eth0".into());
            let info = run_client(cc).unwrap();
            println!(
                "RESULT address={} dhcp={} boot={:?} tftp={} file={} menu={} prompt={:?}",
                info.address,
                info.dhcp_server,
                info.boot_server,
                info.tftp_server,
                info.boot_file,
                info.menu.len(),
                info.prompt.map(|p| p.0)
            );
        }
        other => panic!("unknown role {other}"),
    }
}

fn root_tools(tools: &[&str]) -> bool {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
    {
        unavailable("not root");
    }
    for t in tools {
        if !have(t) {
            unavailable(&format!("{t} not installed"));
        }
    }
    true
}

#[test]
#[cfg_attr(
    preboot_skip_netns_dhcp,
    ignore = "needs root, ip (iproute2) and udhcpd"
)]
fn our_proxy_beside_udhcpd_boots_our_client() {
    if std::env::var("PREBOOT_NETNS_ROLE").is_ok() || !root_tools(&["ip", "udhcpd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The hub runs udhcpd on br0 (192.168.77.2); our proxy is 192.168.77.1;
    // the client has a link address so the boot server's unicast ACK on
    // 4011 reaches it (a PXE ROM's own stack would use the DHCP address).
    let (_net, hub, ns) = topology(
        "p",
        Some("192.168.77.2/24"),
        &[
            ("p", Some("192.168.77.1/24")),
            ("c", Some("192.168.77.250/24")),
        ],
    );
    let conf = dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 192.168.77.100\nend 192.168.77.150\ninterface br0\nlease_file {}\npidfile {}\nopt subnet 255.255.255.0\nopt lease 3600\n",
            dir.path().join("udhcpd.leases").display(),
            dir.path().join("udhcpd.pid").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("udhcpd.leases"), "").unwrap();
    let _udhcpd = Guard(
        Command::new("ip")
            .args(["netns", "exec", &hub, "udhcpd", "-f", "-a", "100"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _proxy = Guard(
        child_in(&ns[0], "proxy", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&dir.path().join("proxy.ready"));
    let client = child_in(&ns[1], "client", dir.path()).output().unwrap();
    let out = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&client.stderr)
    );
    let line = out
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("{out}"));
    let field = |k: &str| {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {line}"))
            .to_string()
    };
    let addr: Ipv4Addr = field("address").parse().unwrap();
    assert!((100..=150).contains(&addr.octets()[3]), "{line}");
    assert_eq!(field("dhcp"), "192.168.77.2", "address from udhcpd");
    assert_eq!(
        field("boot"),
        "Some(192.168.77.1)",
        "boot file from our proxy"
    );
    assert_eq!(field("tftp"), "192.168.77.1");
    assert_eq!(field("file"), "pxelinux.0");
    assert_eq!(field("menu"), "1");
    assert_eq!(field("prompt"), "Some(2)");
}

#[test]
#[cfg_attr(
    preboot_skip_netns_dhclient,
    ignore = "needs root, ip (iproute2) and dhclient (isc-dhcp-client)"
)]
fn dhclient_gets_and_releases_a_lease_from_full_mode() {
    if std::env::var("PREBOOT_NETNS_ROLE").is_ok() || !root_tools(&["ip", "dhclient"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_net, _hub, ns) = topology("f", None, &[("s", Some("192.168.78.1/24")), ("c", None)]);
    let _full = Guard(
        child_in(&ns[0], "full", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&dir.path().join("full.ready"));
    let d = dir.path();
    std::fs::write(d.join("dhclient.conf"), "timeout 20;\nretry 1;\n").unwrap();
    // `-sf /bin/true`: never let dhclient-script touch the host's files.
    let common = format!(
        "-cf {0}/dhclient.conf -lf {0}/dhclient.leases -pf {0}/dhclient.pid -sf /bin/true",
        d.display()
    );
    sh(&format!(
        "ip netns exec {} dhclient -4 -1 -v {common} eth0",
        ns[1]
    ));
    let leases = std::fs::read_to_string(d.join("dhclient.leases")).unwrap();
    assert!(leases.contains("fixed-address 192.168.78.100;"), "{leases}");
    assert!(
        leases.contains("option dhcp-server-identifier 192.168.78.1;"),
        "{leases}"
    );
    assert!(leases.contains("option routers 192.168.78.1;"), "{leases}");
    // Our log has it (the ACK left only after the fsync).
    let in_log = || {
        std::fs::read_to_string(d.join("leases"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" 192.168.78.100 "))
            .map(|l| l.chars().next().unwrap())
            .collect::<String>()
    };
    assert_eq!(in_log(), "G");
    // The address must be on the interface for dhclient to unicast the
    // RELEASE from it (dhclient-script would have put it there).
    sh(&format!(
        "ip -n {} addr add 192.168.78.100/24 dev eth0",
        ns[1]
    ));
    sh(&format!(
        "ip netns exec {} dhclient -4 -r -v {common} eth0",
        ns[1]
    ));
    let start = Instant::now();
    while in_log() != "GR" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "release not logged: {}",
            in_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(_full);
    let (_f, live) = LeaseFile::open(&d.join("leases")).unwrap();
    assert!(live.is_empty(), "{live:?}");
}
