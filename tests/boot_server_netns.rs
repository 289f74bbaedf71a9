//! The real `preboot-server` program on the standard ports (67, 4011, 69)
//! with real broadcast, bound to a bridge (`server.interface = "br0"`)
//! inside network namespaces this test creates (names carry the process
//! id) and deletes; nothing is sent anywhere else.
//!
//! - full mode: a PXE client (the library's client driver, BIOS) gets an
//!   address and `pxelinux.0` from it, then fetches the file with `curl`;
//!   the lease is in the lease file; SIGTERM ends it with exit 0.
//! - proxy mode beside busybox `udhcpd`: a UEFI x64 client gets its
//!   address from udhcpd and `efi64/bootx64.efi` (and the menu prompt) from
//!   the example's proxyDHCP and 4011 boot server, then fetches the file.
//! - the preboot client by MTFTP (issue 16): the boot file by multicast
//!   from what the proxy advertises (option 43), the imaging environment
//!   from what the task reply names (TLV 6), TFTP when the MTFTP port is
//!   dropped.
//!
//! Needs root, `ip`, `curl`, `udhcpd`. When those are missing the tests are
//! listed as ignored with the reason (build.rs decides); with
//! `PREBOOT_CI=1` they fail instead.

mod boot_server_support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use boot_server_support::{Server, example, terminate, unavailable};
use preboot::dhcp::client::ClientConfig;
#[path = "../examples/preboot-server/demo.rs"]
mod demo;
use demo::{DEMO_FILES, demo_file};
use preboot::driver::dhcp::{DhcpClientConfig, run_client};

#[path = "support/netns.rs"]
mod netns;
use netns::{have, sh};

const ROLE: &str = "PREBOOT_BSN_ROLE";

fn ready(tools: &[&str]) -> bool {
    if std::env::var(ROLE).is_ok() {
        return false;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        unavailable("not root");
    }
    if let Some(t) = tools.iter().find(|t| !have(t)) {
        unavailable(&format!("{t} not installed"));
    }
    true
}

/// Namespaces, deleted on drop however the test ends.
struct Net(Vec<String>);

impl Drop for Net {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A hub namespace with bridge `br0` holding `hub_addr`, and one namespace
/// per member with `eth0` on the bridge.
fn topology(tag: &str, hub_addr: &str, members: &[(&str, Option<&str>)]) -> (Net, Vec<String>) {
    let pid = std::process::id();
    let hub = format!("pbs{tag}{pid}h");
    let mut net = Net(vec![hub.clone()]);
    sh(&format!("ip netns add {hub}"));
    sh(&format!(
        "ip -n {hub} link add br0 type bridge && ip -n {hub} link set br0 up && ip -n {hub} link set lo up && ip -n {hub} addr add {hub_addr} dev br0"
    ));
    let mut names = vec![hub.clone()];
    for (i, (role, addr)) in members.iter().enumerate() {
        let ns = format!("pbs{tag}{pid}{role}");
        net.0.push(ns.clone());
        sh(&format!("ip netns add {ns}"));
        let (a, b) = (format!("pbs{tag}{pid}a{i}"), format!("pbs{tag}{pid}b{i}"));
        sh(&format!("ip link add {a} type veth peer name {b}"));
        sh(&format!(
            "ip link set {a} netns {ns} && ip -n {ns} link set {a} name eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up"
        ));
        sh(&format!(
            "ip link set {b} netns {hub} && ip -n {hub} link set {b} master br0 && ip -n {hub} link set {b} up"
        ));
        if let Some(a) = addr {
            sh(&format!("ip -n {ns} addr add {a} dev eth0"));
        }
        names.push(ns);
    }
    (net, names)
}

/// The client role, run inside its namespace by the tests below.
#[test]
#[ignore = "role: run inside a network namespace by the tests below"]
fn netns_client() {
    let Ok(arch) = std::env::var(ROLE) else {
        return;
    };
    let arch: u16 = arch.parse().unwrap();
    let mut cc = DhcpClientConfig::new(
        ClientConfig::new([0x52, 0x54, 0, 0x5e, 0x77, arch as u8], arch, [3; 16]),
        std::process::id(),
    );
    cc.interface = Some("eth0".into());
    let info = run_client(cc).unwrap();
    println!(
        "RESULT address={} dhcp={} boot={:?} tftp={} file={} prompt={:?}",
        info.address,
        info.dhcp_server,
        info.boot_server,
        info.tftp_server,
        info.boot_file,
        info.prompt.map(|p| p.0)
    );
}

fn client(ns: &str, arch: u16) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args(["netns_client", "--exact", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env(ROLE, arch.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("{stdout}"))
}

fn field(line: &str, k: &str) -> String {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
        .unwrap_or_else(|| panic!("{k} in {line}"))
        .to_string()
}

/// A TFTP root with the demo's boot files, and the config next to it.
fn tree(dir: &Path, config: &str) -> std::path::PathBuf {
    for (name, size) in DEMO_FILES {
        let p = dir.join("tftp").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, demo_file(name, size)).unwrap();
    }
    let path = dir.join("preboot.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Start the example in `ns`; returns once it printed its banner.
fn start(ns: &str, config: &Path) -> Server {
    let child: Child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(example())
        .args(["--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `ip netns exec` execs the program: this PID is the server's.
    let mut server = Server(child);
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains("stop:") => return server,
            Ok(_) => {}
            Err(_) => {
                let _ = server.0.kill();
                let mut err = String::new();
                let _ =
                    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut err);
                panic!("server did not start: {err}");
            }
        }
    }
}

fn stop(mut server: Server) -> String {
    let status = terminate(&mut server);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    log
}

/// Fetch `file` by TFTP from inside `ns`; exactly the bytes in the root.
fn fetch_matches(ns: &str, server: &str, file: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "20"])
        .arg(format!("tftp://{server}/{file}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl tftp://{server}/{file}");
    let (_, size) = DEMO_FILES.iter().find(|(n, _)| *n == file).unwrap();
    assert!(out.stdout == demo_file(file, *size), "{file}: other bytes");
}

#[test]
#[cfg_attr(
    preboot_skip_netns_curl,
    ignore = "needs root, ip (iproute2) and curl with TFTP"
)]
fn full_mode_on_a_bridge_boots_a_bios_client() {
    if !ready(&["ip", "curl"]) {
        return;
    }
    let dir = state_dir();
    let config = tree(
        dir.path(),
        r#"[server]
mode = "full"
server_ip = "10.77.0.1"
interface = "br0"
[boot]
bios = "bios/pxelinux.0"
uefi_x64 = "efi64/bootx64.efi"
[dhcp]
lease_file = "leases"
[[dhcp.pool]]
subnet = "10.77.0.0/24"
start = "10.77.0.100"
end = "10.77.0.199"
router = "10.77.0.1"
[tftp]
root = "tftp"
"#,
    );
    let (_net, ns) = topology("f", "10.77.0.1/24", &[("c", None)]);
    let server = start(&ns[0], &config);
    let line = client(&ns[1], 0);
    assert_eq!(field(&line, "address"), "10.77.0.100", "{line}");
    assert_eq!(field(&line, "dhcp"), "10.77.0.1");
    assert_eq!(field(&line, "tftp"), "10.77.0.1");
    assert_eq!(field(&line, "file"), "bios/pxelinux.0", "the BIOS file");
    sh(&format!("ip -n {} addr add 10.77.0.100/24 dev eth0", ns[1]));
    fetch_matches(&ns[1], "10.77.0.1", "bios/pxelinux.0");
    let log = stop(server);
    for step in [
        "\"discover\"",
        "\"offer\"",
        "\"ack\"",
        "\"rrq\"",
        "\"transfer-done\"",
    ] {
        assert!(log.contains(&format!("step={step}")), "{step}:\n{log}");
    }
    assert!(
        log.lines().any(|l| l.contains("step=\"transfer-done\"")
            && l.contains("mac=52:54:00:5e:77:00")
            && l.contains("arch=bios")),
        "the TFTP line names the client:\n{log}"
    );
    let leases = std::fs::read_to_string(dir.path().join("leases")).unwrap();
    assert!(leases.contains(" 10.77.0.100 "), "{leases}");
}

#[test]
#[cfg_attr(
    preboot_skip_netns_curl_udhcpd,
    ignore = "needs root, ip (iproute2), curl with TFTP and udhcpd"
)]
fn proxy_mode_beside_udhcpd_boots_a_uefi_client() {
    if !ready(&["ip", "curl", "udhcpd"]) {
        return;
    }
    let dir = state_dir();
    let config = tree(
        dir.path(),
        r#"[server]
mode = "proxy"
server_ip = "10.78.0.1"
interface = "br0"
[boot]
bios = "bios/pxelinux.0"
uefi_x64 = "efi64/bootx64.efi"
[pxe_prompt]
show = "on-key-press"
prompt = "Press F8 for the preboot menu"
timeout_secs = 3
[tftp]
root = "tftp"
"#,
    );
    // udhcpd (10.78.0.2) gives addresses; our proxy on the hub (10.78.0.1)
    // the boot file. The client has a link address so that the boot
    // server's unicast ACK reaches it (firmware would use the DHCP address).
    let (_net, ns) = topology(
        "p",
        "10.78.0.1/24",
        &[("d", Some("10.78.0.2/24")), ("c", Some("10.78.0.250/24"))],
    );
    let _udhcpd = udhcpd(dir.path(), &ns[1], "10.78.0", "");
    let server = start(&ns[0], &config);
    let line = client(&ns[2], 7);
    let addr: Ipv4Addr = field(&line, "address").parse().unwrap();
    assert!((100..=150).contains(&addr.octets()[3]), "{line}");
    assert_eq!(field(&line, "dhcp"), "10.78.0.2", "address from udhcpd");
    assert_eq!(
        field(&line, "boot"),
        "Some(10.78.0.1)",
        "file from our proxy"
    );
    assert_eq!(field(&line, "tftp"), "10.78.0.1");
    assert_eq!(
        field(&line, "file"),
        "efi64/bootx64.efi",
        "the UEFI x64 file"
    );
    assert_eq!(field(&line, "prompt"), "Some(3)", "the menu prompt");
    fetch_matches(&ns[2], "10.78.0.1", "efi64/bootx64.efi");
    let log = stop(server);
    for step in [
        "\"discover\"",
        "\"proxy-offer\"",
        "\"request\"",
        "\"boot-ack\"",
        "\"rrq\"",
        "\"transfer-done\"",
    ] {
        assert!(log.contains(&format!("step={step}")), "{step}:\n{log}");
    }
    assert!(log.contains("port=4011"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("step=\"transfer-done\"")
            && l.contains("mac=52:54:00:5e:77:07")
            && l.contains("arch=uefi-x64")),
        "the TFTP line names the client:\n{log}"
    );
}

/// busybox `udhcpd` in namespace `ns` on its `eth0`, giving
/// `<net>.100`–`<net>.150` of a /24 (plus the `extra` config lines); its
/// files in `dir`. Stopped when dropped.
fn udhcpd(dir: &Path, ns: &str, net: &str, extra: &str) -> Server {
    let conf = dir.join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start {net}.100\nend {net}.150\ninterface eth0\nlease_file {}\npidfile {}\nopt subnet 255.255.255.0\n{extra}opt lease 3600\n",
            dir.join("udhcpd.leases").display(),
            dir.join("udhcpd.pid").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("udhcpd.leases"), "").unwrap();
    Server(
        Command::new("ip")
            .args(["netns", "exec", ns, "udhcpd", "-f", "-a", "100"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The server's directory (configuration, TFTP tree, leases). Started as
/// root, the server switches to `nobody` once its ports are bound, so the
/// directory belongs to that account, as `/var/lib/preboot` would.
/// Put `<dir>/state` (owned by the unprivileged user the server runs
/// as) in `config` as `server.state_dir`.
fn with_state_dir(dir: &Path, config: &Path) {
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let text = std::fs::read_to_string(config).unwrap().replace(
        "interface = \"br0\"",
        &format!("interface = \"br0\"\nstate_dir = \"{}\"", state.display()),
    );
    std::fs::write(config, text).unwrap();
}

/// Run the real preboot client in namespace `ns` on its `eth0` with
/// `args` (after `--interface eth0 --step-limit 30`); it must succeed.
/// Its stdout, then its stderr.
fn preboot_client(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(boot_server_support::build_example("preboot-client"))
        .args(["--interface", "eth0", "--step-limit", "30"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// The server's MTFTP port (1759) drops every request in namespace `ns`:
/// a policy rule ahead of the local table, on input only, so no stream
/// starts (the kernel here has no tc classifiers and no iptables).
fn drop_mtftp_requests(ns: &str) {
    sh(&format!(
        "ip -n {ns} rule add pref 100 lookup local && ip -n {ns} rule del pref 0 && ip -n {ns} rule add pref 10 iif br0 ipproto udp dport 1759 blackhole"
    ));
}

fn state_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(dir.path(), Some(nobody), Some(nobody)).unwrap();
    dir
}

/// A blank 2 MiB disk image `name` in `dir` (a workstation's disk).
fn blank_disk(dir: &Path, name: &str) -> std::path::PathBuf {
    let disk = dir.join(name);
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    disk
}

/// The sha256, in hex, of the demo file `name` of `size` bytes.
fn demo_sha(name: &str, size: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(demo_file(name, size))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first line of `text` that contains `needle`.
fn line_with(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle}: {text}"))
        .to_string()
}

/// The preboot client (`examples/preboot-client --interface eth0`) on a
/// namespace whose `eth0` has no address, beside busybox `udhcpd` and the
/// example in proxy mode on the standard ports with its transaction
/// server: broadcast DISCOVER from port 68, the address from udhcpd put on
/// the interface as soon as it is granted, boot information from our proxy
/// and 4011, the transaction server and its key from option 43 (sub-options
/// 128 and 129), then every step to the simulated hand-over; the second
/// boot finds no task.
#[test]
#[cfg_attr(
    preboot_skip_netns_curl_udhcpd,
    ignore = "needs root, ip (iproute2), curl with TFTP and udhcpd"
)]
fn preboot_client_on_an_interface_beside_udhcpd() {
    if !ready(&["ip", "curl", "udhcpd"]) {
        return;
    }
    let dir = state_dir();
    let config = tree(
        dir.path(),
        r#"[server]
mode = "proxy"
server_ip = "10.79.0.1"
interface = "br0"
[boot]
bios = "bios/pxelinux.0"
[tftp]
root = "tftp"
[transaction]
[transaction.keys]
auto_enrol = true
[transaction.store.server]
image_server = "10.79.0.1"
menu = { mode = "never" }
environment = { fetch = "tftp", kernel = "bios/pxelinux.0", initrd = "efi64/bootx64.efi", loader = "" }
[[transaction.store.server.rule]]
name = "no image yet"
image = "images/standard.img"
when = { base_image = "" }
"#,
    );
    with_state_dir(dir.path(), &config);
    let (_net, ns) = topology(
        "q",
        "10.79.0.1/24",
        &[("d", Some("10.79.0.2/24")), ("c", None)],
    );
    let _udhcpd = udhcpd(dir.path(), &ns[1], "10.79.0", "opt router 10.79.0.1\n");
    let server = start(&ns[0], &config);
    let disk = blank_disk(dir.path(), "disk.img");
    let boot = || preboot_client(&ns[2], &["--disk", &disk.display().to_string()]);
    let first = boot();
    let dhcp = first
        .lines()
        .find(|l| l.starts_with("dhcp "))
        .unwrap_or_else(|| panic!("{first}"));
    let granted: Ipv4Addr = dhcp
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{dhcp}"));
    assert!(
        (100..=150).contains(&granted.octets()[3]),
        "an address from udhcpd's range: {dhcp}"
    );
    assert!(dhcp.contains("boot server 10.79.0.1"), "{dhcp}");
    assert!(first.contains("server key from the DHCP answer"), "{first}");
    assert!(first.contains("authenticated to 10.79.0.1:4012"), "{first}");
    assert!(first.contains("restore images/standard.img"), "{first}");
    assert!(first.contains("RESULT imaged tasks="), "{first}");
    let addr = Command::new("ip")
        .args(["-n", &ns[2], "-4", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(
        addr.contains(&format!("inet {granted}/24")),
        "the address is on eth0: {addr}"
    );
    let second = boot();
    assert!(second.contains("RESULT local-boot"), "{second}");
    stop(server);
}

/// Issue 16, the preboot client by MTFTP: the example in proxy mode beside
/// udhcpd with `[mtftp]` for the BIOS boot file advertises option 43
/// sub-options 1–5 (PXE 2.1 §2.5) in its answers; the real preboot client
/// (BIOS, `--interface`) fetches `bios/pxelinux.0` by MTFTP from them (its
/// unicast socket on the address udhcpd gave), sha256 as on the server.
/// Then the server's MTFTP port is made unreachable (a policy rule in the
/// hub namespace drops what comes in to port 1759: no stream starts) and
/// the client, hearing nothing, falls back to TFTP for the same file.
#[test]
#[cfg_attr(
    preboot_skip_netns_curl_udhcpd,
    ignore = "needs root, ip (iproute2), curl with TFTP and udhcpd"
)]
fn preboot_client_fetches_the_boot_file_by_mtftp() {
    if !ready(&["ip", "curl", "udhcpd"]) {
        return;
    }
    let dir = state_dir();
    let config = tree(
        dir.path(),
        r#"[server]
mode = "proxy"
server_ip = "10.78.0.1"
interface = "br0"
[boot]
bios = "bios/pxelinux.0"
[tftp]
root = "tftp"
[mtftp]
listen_secs = 1
delay_secs = 1
[[mtftp.file]]
file = "bios/pxelinux.0"
group = "239.255.78.1"
client_port = 3001
"#,
    );
    let (_net, ns) = topology(
        "m",
        "10.78.0.1/24",
        &[("d", Some("10.78.0.2/24")), ("c", None)],
    );
    let _udhcpd = udhcpd(dir.path(), &ns[1], "10.78.0", "");
    let server = start(&ns[0], &config);
    let disk = blank_disk(dir.path(), "disk.img");
    let want = demo_sha("bios/pxelinux.0", 42_489);
    let boot = || {
        let text = preboot_client(
            &ns[2],
            &[
                "--arch",
                "0",
                "--baseline-files",
                "bios/pxelinux.0",
                "--disk",
                &disk.display().to_string(),
            ],
        );
        let line = line_with(&text, "bios/pxelinux.0 by ");
        assert!(line.contains(&format!("sha256 {want}")), "{line}\n{text}");
        line
    };
    let line = boot();
    assert!(line.contains("by MTFTP ("), "{line}");
    // The server's MTFTP port drops every request (a policy rule ahead
    // of the local table, on input only): no block 1, no stream.
    drop_mtftp_requests(&ns[0]);
    let line = boot();
    assert!(
        line.contains("by TFTP (MTFTP fell back: no answer)"),
        "{line}"
    );
    stop(server);
}

/// Issue 16, the imaging environment by MTFTP (transaction protocol
/// §4.5.2): with `environment.fetch = "mtftp"` and `[[mtftp.file]]`
/// entries for its kernel and initrd, the `TaskReply` carries TLV 6 for
/// both and the real preboot client (BIOS, `--interface`, beside udhcpd)
/// fetches the boot file, the kernel and the initrd by MTFTP, sha256 as on
/// the server. With the server's MTFTP port dropped (a policy rule in the
/// hub namespace), a new workstation gets all three by TFTP instead.
#[test]
#[cfg_attr(
    preboot_skip_netns_curl_udhcpd,
    ignore = "needs root, ip (iproute2), curl with TFTP and udhcpd"
)]
fn preboot_client_fetches_the_environment_by_mtftp() {
    if !ready(&["ip", "curl", "udhcpd"]) {
        return;
    }
    let dir = state_dir();
    let config = tree(
        dir.path(),
        r#"[server]
mode = "proxy"
server_ip = "10.77.0.1"
interface = "br0"
[boot]
bios = "bios/pxelinux.0"
[tftp]
root = "tftp"
[mtftp]
listen_secs = 1
delay_secs = 1
[[mtftp.file]]
file = "bios/pxelinux.0"
group = "239.255.77.1"
client_port = 3001
[[mtftp.file]]
file = "efi64/bootx64.efi"
group = "239.255.77.2"
client_port = 3001
[[mtftp.file]]
file = "efi32/bootia32.efi"
group = "239.255.77.3"
client_port = 3001
[transaction]
[transaction.keys]
auto_enrol = true
[transaction.store.server]
image_server = "10.77.0.1"
menu = { mode = "never" }
environment = { fetch = "mtftp", kernel = "efi64/bootx64.efi", initrd = "efi32/bootia32.efi", loader = "" }
[[transaction.store.server.rule]]
name = "no image yet"
image = "images/standard.img"
when = { base_image = "" }
"#,
    );
    with_state_dir(dir.path(), &config);
    let (_net, ns) = topology(
        "e",
        "10.77.0.1/24",
        &[("d", Some("10.77.0.2/24")), ("c", None)],
    );
    let _udhcpd = udhcpd(dir.path(), &ns[1], "10.77.0", "");
    let server = start(&ns[0], &config);
    let (boot_sha, k_sha, i_sha) = (
        demo_sha("bios/pxelinux.0", 42_489),
        demo_sha("efi64/bootx64.efi", 65_536 + 311),
        demo_sha("efi32/bootia32.efi", 49_152 + 77),
    );
    // Each boot a new workstation (its MAC, its disk): one with a pending
    // task.
    let boot = |disk: &str, mac: &str| {
        let disk = blank_disk(dir.path(), disk);
        let text = preboot_client(
            &ns[2],
            &[
                "--arch",
                "0",
                "--mac",
                mac,
                "--disk",
                &disk.display().to_string(),
            ],
        );
        assert!(text.contains("RESULT imaged tasks="), "{text}");
        let b = line_with(&text, "bios/pxelinux.0 by ");
        assert!(b.contains(&format!("sha256 {boot_sha}")), "{b}");
        let env = line_with(&text, "efi64/bootx64.efi by ");
        assert!(
            env.contains(&format!("sha256 {}…", &k_sha[..16]))
                && env.contains(&format!("sha256 {}…", &i_sha[..16])),
            "{env}"
        );
        (b, env)
    };
    let (b, env) = boot("disk1.img", "02:00:00:00:77:01");
    assert!(b.contains("by MTFTP ("), "{b}");
    assert!(
        env.contains("efi64/bootx64.efi by MTFTP (")
            && env.contains("efi32/bootia32.efi by MTFTP ("),
        "{env}"
    );
    // The server's MTFTP port drops every request: no stream starts.
    drop_mtftp_requests(&ns[0]);
    let (b, env) = boot("disk2.img", "02:00:00:00:77:02");
    let fell = "by TFTP (MTFTP fell back: no answer)";
    assert!(b.contains(fell), "{b}");
    assert!(
        env.contains(&format!("efi64/bootx64.efi {fell}"))
            && env.contains(&format!("efi32/bootia32.efi {fell}")),
        "{env}"
    );
    stop(server);
}
