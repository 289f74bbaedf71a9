//! One workstation through steps 1–19 of the boot (DESIGN.md), in order,
//! each timed: DHCP and the boot server (1–3), the preboot file (4), the
//! image-safe data and the hardware (6), the key and the authenticated
//! session (7), the workstation information, the menu decision and the
//! menu (8–12), the tasks (13–17), the imaging environment (18) and the
//! hand-over to it (19).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

use preboot::dhcp::client::{ClientConfig as DhcpConfig, Granted};
use preboot::driver::image_safe_disk::{read_image_safe, write_image_safe};
use preboot::driver::key_record_disk::DiskKeySlot;
use preboot::driver::transaction::Urandom;
use preboot::mtftp::Channel;
use preboot::tftp::client::ClientConfig as TftpConfig;
use preboot::transaction::provision::provision;
use preboot::transaction::{ClientConfig, Hex};
use preboot::wire::image_safe::{ImageSafe, PendingFlags};
use preboot::wire::transaction::Status;
use preboot::wire::transaction::environment_multicast::EnvironmentFile;
use preboot::wire::transaction::menu_choice::{ImageSafeUpdate, TaskQuery};
use preboot::wire::transaction::messages::{
    MenuMode, Outcome, TaskAction, TaskReport, WorkstationInfo,
};

use preboot::wire::transaction::multicast::{MulticastInfo, MulticastRole, MulticastState};

use crate::dhcp::{DhcpHub, DhcpTarget};
use crate::fetch;
use crate::hardware::Hardware;
use crate::menu::{self, Choice};
use crate::mfetch;
use crate::session::{Answer, Session};

/// The steps, in boot order, as the summary names them.
pub const STEPS: [&str; 9] = [
    "dhcp",
    "boot-file",
    "image-safe",
    "session",
    "info",
    "menu",
    "tasks",
    "environment",
    "handover",
];

/// What happens at step 19.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Handover {
    /// Play the imaging environment: report each task done (progress,
    /// then success) and, for a restore, write the new base image into
    /// the image-safe data, as the imaging environment would.
    Simulate,
    /// Load the imaging environment's kernel and initrd and boot into it
    /// (`kexec_file_load`; Linux, root).
    Kexec,
    /// Stop after fetching the imaging environment; report nothing.
    None,
}

/// How this process reaches the servers and what it does; the same for
/// every workstation it plays.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Steps 1–3.
    pub dhcp: DhcpTarget,
    /// The interface to configure with the address DHCP gives (`--interface`).
    pub interface: Option<String>,
    /// The TFTP port of the server the DHCP answers name (69).
    pub tftp_port: u16,
    /// The transaction server, if not the one DHCP names.
    pub transaction: Option<SocketAddrV4>,
    /// Its port on the boot server when DHCP names none (4012).
    pub transaction_port: u16,
    /// The pinned server key, if not the one DHCP gives.
    pub server_key: Option<[u8; 32]>,
    /// Fetch the boot file named by DHCP (step 4; the firmware did it
    /// already when this runs on the workstation).
    pub fetch_boot_file: bool,
    /// TFTP options asked for.
    pub tftp: TftpConfig,
    /// Where the imaging environment is written (kexec needs files).
    pub work_dir: Option<PathBuf>,
    /// Step 19.
    pub handover: Handover,
    /// DHCP and TFTP only (a benchmark baseline): these files after the
    /// boot file, then stop.
    pub baseline_files: Vec<String>,
    /// Extra kernel command line for the imaging environment.
    pub kexec_append: String,
    /// A console to wait for the hotkey and show the menu on.
    pub console: bool,
    /// The menu entry taken without a console (1-based).
    pub menu_choice: Option<usize>,
    /// Per step.
    pub step_limit: Duration,
    /// How long to wait for a multicast session to start (§4.5.1), asking
    /// again at the server's poll interval; then boot the local disk.
    pub multicast_wait: Duration,
    /// Print each step (one workstation) or stay quiet (many).
    pub verbose: bool,
}

/// One workstation: its hardware (identity included) and its disk.
#[derive(Clone, Debug)]
pub struct Workstation {
    /// Hardware, MACs and UUID.
    pub hardware: Hardware,
    /// Its disk (a block device or a disk-image file): image-safe data
    /// and the key record live there.
    pub disk: PathBuf,
    /// DHCP transaction id.
    pub xid: u32,
    /// A name for messages.
    pub label: String,
    /// Its address, when it has one before DHCP (loopback, an interface
    /// already configured): its sockets bind there and DHCP asks only for
    /// boot information. `0.0.0.0` otherwise.
    pub address: Ipv4Addr,
}

/// How a workstation's boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// No task (or the menu said so): the local disk boots.
    LocalBoot,
    /// The tasks were carried out by the simulated imaging environment.
    Imaged {
        /// Task ids, in order.
        tasks: Vec<u32>,
    },
    /// DHCP and TFTP only (`--baseline-files`): done.
    Baseline,
    /// The imaging environment is fetched, not started.
    Fetched {
        /// Task ids, in order.
        tasks: Vec<u32>,
    },
}

/// Timings and the ending.
#[derive(Clone, Debug)]
pub struct BootOutcome {
    /// Per step of [`STEPS`]: how long it took, if it ran.
    pub steps: [Option<Duration>; STEPS.len()],
    /// The whole boot.
    pub total: Duration,
    /// The ending, or the error and the step it stopped at.
    pub result: Result<Ending, (usize, String)>,
}

struct Run<'a> {
    p: &'a Profile,
    ws: &'a Workstation,
    steps: [Option<Duration>; STEPS.len()],
    step: usize,
    t: StdInstant,
}

impl Run<'_> {
    fn say(&self, text: impl AsRef<str>) {
        if self.p.verbose {
            println!("{:<12} {}", STEPS[self.step], text.as_ref());
        } else {
            tracing::debug!(workstation = %self.ws.label, step = STEPS[self.step], "{}", text.as_ref());
        }
    }
    /// One line per file fetched, with its whole sha256, at debug level in
    /// every mode: what benches/boot-storm.sh checks each workstation's
    /// files and counts the ways they came by.
    fn fetched(&self, name: &str, way: &dyn std::fmt::Display, f: &fetch::Fetched) {
        tracing::debug!(
            workstation = %self.ws.label,
            "fetched {name} {way} · {} bytes · sha256 {}",
            f.bytes,
            fetch::hex(&f.sha256)
        );
    }
    fn begin(&mut self, step: usize) {
        self.step = step;
        self.t = StdInstant::now();
    }
    fn end(&mut self) {
        self.steps[self.step] = Some(self.t.elapsed());
    }
}

/// Run the whole boot of `ws`.
pub fn boot(p: &Profile, ws: &Workstation, hub: &DhcpHub) -> BootOutcome {
    let start = StdInstant::now();
    let mut run = Run {
        p,
        ws,
        steps: [None; STEPS.len()],
        step: 0,
        t: start,
    };
    let result = steps(&mut run, hub).map_err(|e| (run.step, e));
    if let Err((step, e)) = &result {
        if p.verbose {
            println!("{:<12} FAILED: {e}", STEPS[*step]);
        }
    }
    BootOutcome {
        steps: run.steps,
        total: start.elapsed(),
        result,
    }
}

fn steps(run: &mut Run<'_>, hub: &DhcpHub) -> Result<Ending, String> {
    let p = run.p;
    let ws = run.ws;
    let hw = &ws.hardware;
    let mac = *hw
        .to_info()
        .macs
        .first()
        .ok_or("no network interface with a MAC address (give --mac)")?;

    // Steps 1–3: DHCP, proxyDHCP, the boot server on 4011.
    run.begin(0);
    let mut dc = DhcpConfig::new(mac, hw.arch, hw.uuid.unwrap_or([0; 16]));
    dc.boot_timeouts.clear();
    for s in [1, 2, 3, 4] {
        let _ = dc.boot_timeouts.push(Duration::from_secs(s));
    }
    // On an interface: the address goes on it as soon as it is granted,
    // before the boot server on 4011 answers to it by unicast.
    let mut configure = |g: Granted| -> Result<(), String> {
        let Some(iface) = &p.interface else {
            return Ok(());
        };
        let mask = g.subnet_mask.unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
        crate::linux::set_address(iface, g.address, mask)
            .map_err(|e| format!("{iface}: cannot set address {}/{mask}: {e}", g.address))?;
        if let Some(gw) = g.router {
            if let Err(e) = crate::linux::add_default_route(gw) {
                tracing::warn!(%gw, error = %e, "no default route");
            }
        }
        Ok(())
    };
    let info = hub.boot_info(dc, ws.xid, &p.dhcp, ws.address, &mut configure)?;
    run.end();
    run.say(format!(
        "address {} · boot file {} from {} (boot server {})",
        info.address,
        if info.boot_file.is_empty() {
            "(none)"
        } else {
            info.boot_file.as_str()
        },
        info.tftp_server,
        info.boot_server
            .map_or_else(|| "none".to_string(), |b| b.to_string()),
    ));

    // Our own address on the link (loopback, or the one DHCP put on the
    // interface): the MTFTP client's unicast socket binds to it.
    let local = if ws.address.is_unspecified() {
        info.address
    } else {
        ws.address
    };

    // Step 4: the preboot file.
    if p.fetch_boot_file {
        run.begin(1);
        let server = SocketAddrV4::new(info.tftp_server, p.tftp_port);
        // Option 43 sub-options 1–5 of the answer that named the file:
        // by MTFTP from the boot server, TFTP as the fallback.
        let channel = info
            .mtftp
            .as_ref()
            .map(|m| Channel::from_params(info.tftp_server, m));
        let (f, way) = mfetch::file(
            local,
            channel,
            server,
            &info.boot_file,
            None,
            p.tftp,
            p.step_limit,
        )?;
        run.end();
        run.fetched(&info.boot_file, &way, &f);
        run.say(format!(
            "{} {way} · {} bytes · sha256 {} · {} ms",
            info.boot_file,
            f.bytes,
            fetch::hex(&f.sha256),
            f.duration.as_millis()
        ));
    }

    if !p.baseline_files.is_empty() {
        run.begin(7);
        let server = SocketAddrV4::new(info.tftp_server, p.tftp_port);
        for f in &p.baseline_files {
            let got = fetch::tftp(ws.address, server, f, None, p.tftp, p.step_limit)?;
            run.fetched(f, &"by TFTP", &got);
            run.say(format!("{f} · {} bytes", got.bytes));
        }
        run.end();
        return Ok(Ending::Baseline);
    }

    // Step 6: image-safe data (and the hardware, detected before).
    run.begin(2);
    let slots = read_slots(&ws.disk)?;
    let loaded = slots.loaded();
    let raw: Option<&[u8]> = slots.current_bytes();
    let record = loaded.record.clone();
    run.end();
    match (&loaded.problem, &record.base_image) {
        (Some(problem), _) => run.say(format!("{problem}: using the defaults")),
        (None, Some(img)) => run.say(format!(
            "base image {img} · generation {} · flags {:#x}",
            record.generation, record.pending.0
        )),
        (None, None) => run.say(format!(
            "no base image · generation {} · flags {:#x}",
            record.generation, record.pending.0
        )),
    }

    // Step 7: the key (§11.2) and the session.
    run.begin(3);
    let mut slot =
        DiskKeySlot::open(&ws.disk).map_err(|e| format!("{}: {e}", ws.disk.display()))?;
    let mut random = Urandom::open().map_err(|e| format!("/dev/urandom: {e}"))?;
    let key_record = provision(&mut slot, &mut random)
        .map_err(|e| format!("key record on {}: {e}", ws.disk.display()))?;
    let public = key_record.key.public();
    let (adv_server, adv_key) = advertised(&info);
    let server = p.transaction.or(adv_server).unwrap_or_else(|| {
        SocketAddrV4::new(
            info.boot_server.unwrap_or(info.tftp_server),
            p.transaction_port,
        )
    });
    let server_key = p
        .server_key
        .or(adv_key)
        .ok_or("no transaction server key: give --server-key (the server prints it) or let the boot server advertise it")?;
    if p.verbose {
        println!(
            "{:<12} this workstation's public key {}",
            "key",
            Hex(&public)
        );
        if p.server_key.is_none() {
            println!(
                "{:<12} server key from the DHCP answer (option 43 sub-option 129): trusted on first use; pin it with --server-key",
                "key"
            );
        }
    }
    let config = ClientConfig::new(server, server_key, key_record.key.clone());
    let mut session = Session::establish(ws.address, config, slot, key_record, p.step_limit)?;
    run.end();
    run.say(format!(
        "authenticated to {server} (server key {}…) · session {:016x} · {} handshake(s)",
        &Hex(&server_key).to_string()[..16],
        session.id(),
        session.handshakes
    ));

    // Step 7 (cont.): what the workstation is.
    run.begin(4);
    let mut wi: WorkstationInfo<'_> = hw.to_info();
    wi.image_safe = raw;
    match session.send_info(&wi, p.step_limit)? {
        Answer::Reply => {}
        Answer::Refused(s) => return Err(refusal("WorkstationInfo", s)),
    }
    let ack = session.client().info_ack().ok_or("InfoAck unreadable")?;
    run.end();
    run.say(match (ack.registered, ack.name) {
        (true, Some(n)) => format!("registered as {n}"),
        (true, None) => "registered".to_string(),
        (false, _) => "not registered: the server policy applies".to_string(),
    });

    // Steps 8–12: the menu decision and the menu.
    run.begin(5);
    match session.request("MenuQuery", p.step_limit, |c, now| c.query_menu(now))? {
        Answer::Reply => {}
        Answer::Refused(s) => return Err(refusal("MenuQuery", s)),
    }
    let (mode, hotkey, wait_ms, entries, default_entry, choice_ms) = {
        let r = session
            .client()
            .menu_reply()
            .ok_or("MenuReply unreadable")?;
        let entries: Vec<(u8, String)> = r
            .entries
            .iter()
            .map(|e| (e.kind, e.label.to_string()))
            .collect();
        (
            r.mode,
            r.hotkey,
            r.wait_ms,
            entries,
            r.default_entry,
            r.choice_timeout_ms,
        )
    };
    let show = match mode {
        MenuMode::Never => {
            run.say("menu: never shown");
            false
        }
        MenuMode::Always => true,
        MenuMode::OnKeyPress => {
            let hk = hotkey.unwrap_or(preboot::wire::transaction::messages::Hotkey {
                modifiers: 0,
                key: 0,
            });
            let wait = Duration::from_millis(u64::from(wait_ms.unwrap_or(3000)));
            if p.console {
                run.say(format!(
                    "press {} within {} s for the menu",
                    menu::hotkey_name(&hk),
                    wait.as_secs_f32()
                ));
                let pressed = menu::wait_for_hotkey(&hk, wait);
                run.say(if pressed {
                    "hotkey pressed"
                } else {
                    "hotkey not pressed: no menu"
                });
                pressed
            } else {
                run.say(format!(
                    "menu on {}: no console, not waiting",
                    menu::hotkey_name(&hk)
                ));
                false
            }
        }
        MenuMode::Unknown(m) => {
            run.say(format!("menu mode {m} unknown to this client: not shown"));
            false
        }
    };
    let mut maintenance = false;
    let mut chosen = None;
    if show {
        if p.verbose || p.console {
            println!("PREBOOT-MENU ({} entries)", entries.len());
            for (i, (kind, label)) in entries.iter().enumerate() {
                println!("  {}. {label}  [{}]", i + 1, menu::kind_name(*kind));
            }
        }
        // §4.4 TLVs 7 and 8: the default entry and how long to wait.
        let wait = choice_ms.map_or(menu::CHOICE_WAIT, |ms| Duration::from_millis(u64::from(ms)));
        let choice = menu::choose(&entries, p.console, p.menu_choice, default_entry, wait);
        run.say(format!("menu choice: {choice:?}"));
        chosen = Some(choice.kind());
        match choice {
            Choice::Automatic | Choice::Other(_) | Choice::Register => {}
            Choice::ImagingPartition(_) => {}
            Choice::Maintenance => maintenance = true,
            Choice::BootLocal => {
                run.end();
                run.say("the menu says: boot the local disk");
                return Ok(Ending::LocalBoot);
            }
        }
    }
    run.end();

    // Steps 13–17: the tasks. A multicast session that has not started
    // says "waiting": ask again after its poll interval (§4.5.1), at most
    // `multicast_wait` in all, then boot the local disk.
    run.begin(6);
    let wait_until = StdInstant::now() + p.multicast_wait;
    let mut polls = 0u32;
    // §4.5 TLV 1: the server answers what the menu entry asks for.
    let query = TaskQuery { choice: chosen };
    let (tasks, env, update) = loop {
        match session.request("TaskQuery", p.step_limit, |c, now| {
            c.query_tasks_with(now, &query)
        })? {
            Answer::Reply => {}
            Answer::Refused(s) => return Err(refusal("TaskQuery", s)),
        }
        let (tasks, env, sessions, update) = {
            let tr = session
                .client()
                .task_reply()
                .ok_or("TaskReply unreadable")?;
            // A member of a multicast session lays down the session's
            // image (TLV 4): the simulated hand-over records it as a
            // restore would.
            let tasks: Vec<(u32, String, TaskKind)> = tr
                .tasks
                .iter()
                .map(|t| {
                    let joined = tr.multicast.iter().find(|m| {
                        m.task_id == t.id
                            && m.role == MulticastRole::Member
                            && matches!(t.action, TaskAction::JoinMulticast { .. })
                    });
                    let kind = match joined {
                        Some(m) => TaskKind::Restore(m.image.to_string()),
                        None => TaskKind::of(&t.action),
                    };
                    (t.id, describe(&t.action), kind)
                })
                .collect();
            // TLV 2, with the MTFTP channels of its files (TLV 6, §4.5.2).
            let env = tr.environment.as_ref().map(|e| {
                (
                    e.kernel.to_string(),
                    e.initrd.to_string(),
                    e.loader.to_string(),
                    tr.environment_multicast.clone(),
                )
            });
            // TLV 4 of the tasks in this reply: (waiting, poll secs, text).
            let sessions: Vec<(bool, u16, String)> = tr
                .multicast
                .iter()
                .filter(|m| tr.tasks.iter().any(|t| t.id == m.task_id))
                .map(|m| {
                    let waiting = m.state != MulticastState::Started;
                    (waiting, m.poll_secs, describe_multicast(m))
                })
                .collect();
            (tasks, env, sessions, tr.image_safe.clone())
        };
        for (_, _, text) in &sessions {
            run.say(text);
            if p.verbose {
                println!("PREBOOT-MULTICAST {text}");
            }
        }
        let Some(poll) = sessions
            .iter()
            .filter(|s| s.0)
            .map(|s| Duration::from_secs(u64::from(s.1.max(1))))
            .min()
        else {
            break (tasks, env, update);
        };
        let left = wait_until.saturating_duration_since(StdInstant::now());
        polls += 1;
        if left.is_zero() || polls > MAX_MULTICAST_POLLS {
            run.end();
            run.say(format!(
                "the multicast session did not start within {} s ({polls} queries): boot the local disk",
                p.multicast_wait.as_secs()
            ));
            if p.verbose {
                println!("PREBOOT-LOCAL-BOOT");
            }
            return Ok(Ending::LocalBoot);
        }
        run.say(format!(
            "multicast session waiting: asking again in {} s",
            poll.min(left).as_secs()
        ));
        std::thread::sleep(poll.min(left));
    };
    run.end();
    // §4.5 TLV 5: the change the server asks to be written (the imaging
    // partition's flag, IP settings from its pool).
    if let Some(u) = &update {
        apply_update(&ws.disk, u)?;
        run.say(format!(
            "image-safe data updated by the server: flags +{:#x} -{:#x}{}",
            u.set,
            u.clear,
            u.ip.as_ref()
                .map(|ip| format!(", static {}/{} via {}", ip.address, ip.netmask, ip.gateway))
                .unwrap_or_default()
        ));
    }
    let work: Vec<&(u32, String, TaskKind)> = tasks
        .iter()
        .filter(|t| !matches!(t.2, TaskKind::BootLocal))
        .collect();
    if work.is_empty() && !maintenance {
        run.say("no task: boot the local disk");
        if p.verbose {
            println!("PREBOOT-LOCAL-BOOT");
        }
        return Ok(Ending::LocalBoot);
    }
    for (id, text, _) in &tasks {
        run.say(format!("task {id}: {text}"));
    }
    let ids: Vec<u32> = work.iter().map(|t| t.0).collect();

    // Step 18: the imaging environment.
    run.begin(7);
    let (kernel, initrd, _loader, channels) =
        env.ok_or("tasks are pending but the server names no imaging environment")?;
    let server = SocketAddrV4::new(info.tftp_server, p.tftp_port);
    let (kpath, ipath) = match &p.work_dir {
        Some(d) => (Some(d.join("kernel")), Some(d.join("initrd"))),
        None => (None, None),
    };
    // §4.5.2: a file with a TLV 6 channel comes by MTFTP, TFTP as the
    // fallback; the others by TFTP.
    let (k, kway) = mfetch::file(
        local,
        mfetch::channel(&channels, EnvironmentFile::Kernel),
        server,
        &kernel,
        kpath.as_deref(),
        p.tftp,
        p.step_limit,
    )?;
    let (i, iway) = mfetch::file(
        local,
        mfetch::channel(&channels, EnvironmentFile::Initrd),
        server,
        &initrd,
        ipath.as_deref(),
        p.tftp,
        p.step_limit,
    )?;
    run.end();
    run.fetched(&kernel, &kway, &k);
    run.fetched(&initrd, &iway, &i);
    run.say(format!(
        "{kernel} {kway} ({} bytes, sha256 {}…) · {initrd} {iway} ({} bytes, sha256 {}…)",
        k.bytes,
        &fetch::hex(&k.sha256)[..16],
        i.bytes,
        &fetch::hex(&i.sha256)[..16]
    ));

    // Step 19: hand over.
    run.begin(8);
    match p.handover {
        Handover::None => {
            run.end();
            Ok(Ending::Fetched { tasks: ids })
        }
        Handover::Kexec => {
            let (Some(kp), Some(ip)) = (kpath, ipath) else {
                return Err("kexec needs --work-dir".into());
            };
            let mut cmdline = String::new();
            let list: Vec<String> = ids.iter().map(u32::to_string).collect();
            let _ = write!(
                cmdline,
                "{} preboot.tasks={} preboot.transaction={} preboot.server_key={} preboot.mode={}",
                p.kexec_append.trim(),
                list.join(","),
                session.server(),
                Hex(&server_key),
                if maintenance {
                    "maintenance"
                } else {
                    "automatic"
                }
            );
            let cmdline = cmdline.trim().to_string();
            println!(
                "PREBOOT-KEXEC tasks={} cmdline=\"{cmdline}\"",
                list.join(",")
            );
            Err(format!(
                "kexec: {}",
                crate::linux::kexec(&kp, &ip, &cmdline)
            ))
        }
        Handover::Simulate => {
            for (id, _, kind) in &work {
                for (outcome, percent) in [(Outcome::Progress, 50), (Outcome::Success, 100)] {
                    let report = TaskReport {
                        task_id: *id,
                        outcome,
                        percent: Some(percent),
                        reason: None,
                    };
                    match session
                        .request("TaskReport", p.step_limit, |c, now| c.report(now, &report))?
                    {
                        Answer::Reply => {}
                        Answer::Refused(s) => return Err(refusal("TaskReport", s)),
                    }
                }
                // What the imaging environment records in the image-safe
                // data once a task succeeded: the image restored, and the
                // pending flag that asked for the task cleared (else the
                // next boot would ask again; docs/policy.md).
                match kind {
                    TaskKind::Restore(image) => {
                        write_base_image(&ws.disk, image)?;
                        run.say(format!(
                            "task {id}: restored (simulated) · image-safe base image = {image}"
                        ));
                    }
                    TaskKind::Create => {
                        set_flag(&ws.disk, PendingFlags::CREATE_IMAGE, false)?;
                        run.say(format!("task {id}: image created (simulated)"));
                    }
                    TaskKind::Maintenance => {
                        set_flag(&ws.disk, PendingFlags::MAINTENANCE, false)?;
                        run.say(format!("task {id}: maintenance done (simulated)"));
                    }
                    _ => run.say(format!("task {id}: done (simulated)")),
                }
            }
            run.end();
            Ok(Ending::Imaged { tasks: ids })
        }
    }
}

/// The transaction server and key the DHCP answers named (option 43
/// sub-options 128 and 129), if any.
fn advertised(info: &preboot::dhcp::client::BootInfo) -> (Option<SocketAddrV4>, Option<[u8; 32]>) {
    match &info.transaction {
        Some(t) => (Some(t.address), t.public_key),
        None => (None, None),
    }
}

/// Queries while a multicast session waits, at most (a bound besides the
/// time limit, for a server that asks for a poll every second).
const MAX_MULTICAST_POLLS: u32 = 10_000;

/// The multicast fields of a task (TLV 4, §4.5.1), for the console.
fn describe_multicast(m: &MulticastInfo<'_>) -> String {
    let role = match m.role {
        MulticastRole::Master => "master".to_string(),
        MulticastRole::Member => "member".to_string(),
        MulticastRole::Unknown(r) => format!("role {r}"),
    };
    let state = match m.state {
        MulticastState::Started => "started".to_string(),
        MulticastState::Waiting => format!("waiting (poll {} s)", m.poll_secs),
        MulticastState::Unknown(s) => format!("state {s} (poll {} s)", m.poll_secs),
    };
    format!(
        "task={} session={} role={role} run={} state={state} joined={} image={} server={} stream={}:{}",
        m.task_id, m.session, m.run, m.joined, m.image, m.server, m.group, m.port
    )
}

fn refusal(what: &str, s: Status) -> String {
    format!("the server refused {what}: {s:?}")
}

/// What a task asks, for the hand-over.
#[derive(Clone, Debug)]
enum TaskKind {
    BootLocal,
    Restore(String),
    Create,
    Maintenance,
    Other,
}

impl TaskKind {
    fn of(a: &TaskAction<'_>) -> TaskKind {
        match a {
            TaskAction::BootLocal => TaskKind::BootLocal,
            TaskAction::RestoreImage { image, .. } => TaskKind::Restore(image.to_string()),
            TaskAction::CreateImage { .. } => TaskKind::Create,
            TaskAction::Maintenance { .. } => TaskKind::Maintenance,
            _ => TaskKind::Other,
        }
    }
}

fn describe(a: &TaskAction<'_>) -> String {
    match a {
        TaskAction::BootLocal => "boot the local disk".into(),
        TaskAction::RestoreImage {
            server,
            image,
            partitions,
        } => {
            if partitions.is_empty() {
                format!("restore {image} from {server}")
            } else {
                format!("restore {image} from {server}, partitions {partitions:?}")
            }
        }
        TaskAction::CreateImage { server, target } => format!("create {target} on {server}"),
        TaskAction::JoinMulticast {
            session,
            group,
            port,
            ..
        } => format!("join multicast session {session} ({group}:{port})"),
        TaskAction::Maintenance { reason } => format!("maintenance: {reason}"),
        TaskAction::Unknown { kind, .. } => format!("task kind {kind} (unknown to this client)"),
    }
}

/// Write the image-safe data with a new base image and the "image on
/// next boot" flag cleared.
fn write_base_image(disk: &Path, image: &str) -> Result<(), String> {
    let slots = read_slots(disk)?;
    let mut rec = slots.loaded().record.clone();
    rec.base_image = Some(image);
    rec.pending = PendingFlags(rec.pending.0 & !PendingFlags::IMAGE_NEXT_BOOT);
    write_current(disk, &rec)
}

/// Write what the server's `ImageSafeUpdate` says (§4.5 TLV 5) into the
/// image-safe data (§10): flags set then cleared; IP settings made static.
fn apply_update(disk: &Path, u: &ImageSafeUpdate) -> Result<(), String> {
    let slots = read_slots(disk)?;
    let mut rec = slots.loaded().record.clone();
    rec.pending = PendingFlags((rec.pending.0 | u.set) & !u.clear);
    if let Some(ip) = &u.ip {
        rec.net_mode = preboot::wire::transaction::messages::NetMode::Static;
        rec.address = Some(ip.address);
        rec.netmask = Some(ip.netmask);
        rec.gateway = Some(ip.gateway);
        rec.dns = ip.dns.clone();
    }
    write_current(disk, &rec)
}

/// Set or clear one pending flag (§10.2 field 10) of the image-safe data.
fn set_flag(disk: &Path, bit: u32, on: bool) -> Result<(), String> {
    let (set, clear) = if on { (bit, 0) } else { (0, bit) };
    apply_update(
        disk,
        &ImageSafeUpdate {
            set,
            clear,
            ip: None,
        },
    )
}

fn read_slots(disk: &Path) -> Result<preboot::driver::image_safe_disk::DiskSlots, String> {
    read_image_safe(disk).map_err(|e| format!("{}: {e}", disk.display()))
}

/// Write `rec` as the new current copy (§10.3: the other slot, flushed,
/// then current).
fn write_current(disk: &Path, rec: &ImageSafe<'_>) -> Result<(), String> {
    write_image_safe(disk, rec)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", disk.display()))
}

/// A disk-image file of 2 MiB (sparse) for a simulated workstation, made
/// if missing.
pub fn ensure_disk(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(2 << 20)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `52:54:00:…` text for messages.
pub fn mac_label(m: &[u8; 6]) -> String {
    preboot::dhcp::HwAddr::new(m).to_string()
}

/// The address the client would use towards `to` (for `ciaddr` when the
/// interface is already configured).
pub fn local_address_towards(to: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((to, 9)).ok()?;
    match s.local_addr().ok()? {
        std::net::SocketAddr::V4(a) => Some(*a.ip()),
        _ => None,
    }
}
