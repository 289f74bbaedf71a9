//! DHCP wire layer against `dhcproto` 0.15, side by side in the same run.
//!
//! For three real datagrams (`tests/vectors/`: the iPXE BIOS DISCOVER, the
//! OVMF UEFI DISCOVER and dnsmasq's proxyDHCP OFFER with PXE option 43):
//!
//! - `parse_walk`: check the message, read the header fields and walk every
//!   option *typed*, using each value (ours: [`DhcpPacket::options`], the
//!   items of options 55 and 93 walked; option 43 as bytes, as `dhcproto`
//!   types it). `preboot-pxe` also walks option 43 as typed PXE sub-options
//!   (boot servers, menu entries), work `dhcproto` does not do. Against
//!   `dhcproto`'s `Message::decode` (owned, allocating) and its borrowed
//!   lazy walk (`v4::borrowed::Message::opts`, untyped code + bytes).
//! - `build`: write the whole message. Ours: [`DhcpRepr::emit`] into a
//!   stack buffer; `dhcproto`: `Message::encode` into a reused `Vec`.
//!
//! Run: `cargo bench --bench dhcp`. After criterion's own report the bench
//! prints a table (median time per message, ours / theirs / ratio) read
//! from criterion's estimates of this run; `cargo bench --bench dhcp --
//! --table` prints the table of the last run without measuring again.
//!
//! `cargo bench --bench dhcp -- --repeat WORK MESSAGE N` runs one piece of
//! work N times and nothing else, for instruction counts that do not
//! depend on the machine's load (`valgrind --tool=callgrind` on the bench
//! binary). WORK is one of `preboot`, `preboot-pxe`, `dhcproto-decode`,
//! `dhcproto-borrowed`, `build`, `dhcproto-encode`; MESSAGE one of the
//! short names above (`ipxe-discover`, `ovmf-discover`, `proxy-offer-43`).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use preboot::wire::dhcp::{ClientId, DhcpOption, DhcpPacket, DhcpRepr, UserClass};
use preboot::wire::pxe::{PxeOption, PxeOptions};

/// The messages: (short name, vector file).
const MESSAGES: [(&str, &str); 3] = [
    ("ipxe-discover", "ipxe-bios-discover"),
    ("ovmf-discover", "ovmf-uefi-discover"),
    ("proxy-offer-43", "dnsmasq-proxy-offer-bios"),
];

const GROUP: &str = "dhcp";

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("vector file");
    let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    hex.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

/// Our full typed walk, the way a server reads a request: every option
/// decoded to its type and its value used (list items walked); with `pxe`,
/// option 43 is also walked as typed PXE sub-options (boot servers and
/// menu entries included), work `dhcproto` does not do (it keeps option 43
/// as bytes). Returns a checksum so nothing is optimised away.
#[inline(always)]
fn ours_parse_walk(bytes: &[u8], pxe: bool) -> usize {
    let Ok(p) = DhcpPacket::new_checked(bytes) else {
        return 0;
    };
    let mut sum = p.xid() as usize
        + p.flags() as usize
        + usize::from(p.op())
        + p.chaddr().len()
        + p.file().len()
        + p.sname().len()
        + u32::from(p.yiaddr()) as usize;
    for o in p.options() {
        sum += usize::from(o.code());
        sum += match o {
            DhcpOption::MessageType(m) => usize::from(u8::from(m)),
            DhcpOption::MaximumMessageSize(n) => usize::from(n),
            DhcpOption::ServerIdentifier(a) | DhcpOption::SubnetMask(a) => u32::from(a) as usize,
            DhcpOption::ParameterRequestList(d) => d.bytes().map(usize::from).sum::<usize>(),
            DhcpOption::ClientSystemArchitecture(a) => {
                a.iter().map(|x| usize::from(u16::from(x))).sum::<usize>()
            }
            DhcpOption::ClientNetworkInterface(n) => usize::from(n.major + n.minor),
            DhcpOption::ClientMachineIdentifier(m) => usize::from(m.bytes[0] ^ m.bytes[15]),
            DhcpOption::ClientIdentifier(c) => match c {
                ClientId::Rfc2132 { id_type, id } => usize::from(id_type) + id.len(),
                ClientId::Duid { iaid, duid } => iaid as usize + duid.len(),
            },
            DhcpOption::VendorClassIdentifier(d) | DhcpOption::UserClass(UserClass(d)) => d.len(),
            DhcpOption::VendorSpecific(d) if pxe => {
                let mut n = 0;
                for s in PxeOptions::new(d) {
                    n += usize::from(s.code());
                    match s {
                        PxeOption::BootMenu(m) => {
                            n += m.iter().map(|i| i.description.len()).sum::<usize>()
                        }
                        PxeOption::BootServers(b) => {
                            n += b.iter().map(|b| b.addrs.len()).sum::<usize>()
                        }
                        PxeOption::MenuPrompt(m) => n += m.prompt.len(),
                        s => n += s.payload_len(),
                    }
                }
                n
            }
            o => o.payload_len(),
        };
    }
    sum
}

/// [`ours_parse_walk`] of the top-level options (the same typing as
/// `dhcproto`'s decode: option 43 as bytes).
#[inline(never)]
fn ours_walk(bytes: &[u8]) -> usize {
    ours_parse_walk(bytes, false)
}

/// [`ours_parse_walk`] with the PXE sub-options of option 43 walked too.
#[inline(never)]
fn ours_walk_pxe(bytes: &[u8]) -> usize {
    ours_parse_walk(bytes, true)
}

/// Our build: the whole message into a stack buffer.
fn ours_build(repr: &DhcpRepr<'_>, out: &mut [u8]) -> usize {
    black_box(repr).emit(black_box(out)).unwrap_or(0)
}

/// dhcproto's encode into a reused `Vec`.
fn theirs_encode(msg: &dhcproto::v4::Message, vec: &mut Vec<u8>) -> usize {
    vec.clear();
    black_box(msg)
        .encode(&mut Encoder::new(vec))
        .map_or(0, |()| vec.len())
}

/// dhcproto's owned decode (every option decoded into its owned type).
#[inline(never)]
fn theirs_decode(bytes: &[u8]) -> usize {
    match dhcproto::v4::Message::decode(&mut Decoder::new(bytes)) {
        Ok(m) => m.xid() as usize + m.opts().len() + black_box(&m).chaddr().len(),
        Err(_) => 0,
    }
}

/// dhcproto's borrowed lazy walk (code + bytes of every option, untyped).
#[inline(never)]
fn theirs_borrowed_walk(bytes: &[u8]) -> usize {
    let Ok(m) = dhcproto::v4::borrowed::Message::new(bytes) else {
        return 0;
    };
    let mut sum = m.xid() as usize
        + usize::from(m.flags().broadcast())
        + m.chaddr().len()
        + m.fname().len()
        + m.sname().len()
        + u32::from(m.yiaddr()) as usize;
    for o in m.opts() {
        sum += usize::from(u8::from(o.code())) + black_box(o.data()).len();
    }
    sum
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    for (short, file) in MESSAGES {
        let bytes = load(file);
        // Same message both sides: ours parsed to a DhcpRepr, theirs decoded.
        let p = DhcpPacket::new_checked(&bytes[..]).expect("vector parses");
        let repr = DhcpRepr::parse(&p).expect("vector parses");
        let has_43 = repr.option(43).is_some();
        let msg =
            dhcproto::v4::Message::decode(&mut Decoder::new(&bytes)).expect("dhcproto decodes");
        let mut out = [0u8; 1500];
        let n = repr.emit(&mut out).expect("emits");
        assert_eq!(
            &out[..n],
            &bytes[..],
            "{file}: canonical, re-emitted exactly"
        );
        assert!(ours_walk_pxe(&bytes) > ours_walk(&bytes) || !has_43);
        assert!(theirs_borrowed_walk(&bytes) > 0);

        g.bench_function(format!("parse_walk/preboot/{short}"), |b| {
            b.iter(|| ours_walk(black_box(&bytes)))
        });
        if has_43 {
            g.bench_function(format!("parse_walk/preboot-pxe/{short}"), |b| {
                b.iter(|| ours_walk_pxe(black_box(&bytes)))
            });
        }
        g.bench_function(format!("parse_walk/dhcproto-decode/{short}"), |b| {
            b.iter(|| theirs_decode(black_box(&bytes)))
        });
        g.bench_function(format!("parse_walk/dhcproto-borrowed/{short}"), |b| {
            b.iter(|| theirs_borrowed_walk(black_box(&bytes)))
        });
        g.bench_function(format!("build/preboot/{short}"), |b| {
            b.iter(|| ours_build(&repr, &mut out))
        });
        let mut vec = Vec::with_capacity(1500);
        g.bench_function(format!("build/dhcproto-encode/{short}"), |b| {
            b.iter(|| theirs_encode(&msg, &mut vec))
        });
    }
    g.finish();
}

/// Where criterion writes its estimates (its own rule: `CRITERION_HOME`,
/// else `$CARGO_TARGET_DIR/criterion`, else `target/criterion`).
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("criterion")
}

/// Median time in ns of one benchmark of this group, from criterion's
/// `estimates.json` (criterion names the directory after the id, with
/// `/` replaced by `_`).
fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(GROUP)
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn print_table() {
    println!();
    println!("| message | work | preboot | dhcproto | ratio |");
    println!("|---|---|---:|---:|---:|");
    let rows = [
        (
            "parse_walk/preboot",
            "parse_walk/dhcproto-decode",
            "parse + typed walk vs `Message::decode`",
        ),
        (
            "parse_walk/preboot",
            "parse_walk/dhcproto-borrowed",
            "parse + typed walk vs borrowed walk",
        ),
        (
            "parse_walk/preboot-pxe",
            "parse_walk/dhcproto-decode",
            "same + PXE sub-options of 43 vs `Message::decode`",
        ),
        (
            "parse_walk/preboot-pxe",
            "parse_walk/dhcproto-borrowed",
            "same + PXE sub-options of 43 vs borrowed walk",
        ),
        (
            "build/preboot",
            "build/dhcproto-encode",
            "build vs `encode`",
        ),
    ];
    for (short, _) in MESSAGES {
        for (ours, theirs, what) in rows {
            let a = median_ns(&format!("{ours}/{short}"));
            let b = median_ns(&format!("{theirs}/{short}"));
            match (a, b) {
                (Some(a), Some(b)) => println!(
                    "| {short} | {what} | {a:.0} ns | {b:.0} ns | {:.1}× |",
                    b / a
                ),
                // The PXE rows apply only to messages with option 43.
                _ if ours.ends_with("-pxe") => {}
                _ => println!("| {short} | {what} | – | – | (not measured) |"),
            }
        }
    }
}

/// `--repeat WORK MESSAGE N` (see the module docs): returns the checksum
/// of the last run, or an error for an unknown WORK or MESSAGE.
fn repeat(work: &str, message: &str, n: u64) -> Result<usize, String> {
    let file = MESSAGES
        .iter()
        .find(|(short, _)| *short == message)
        .map(|(_, file)| *file)
        .ok_or_else(|| format!("unknown message {message}"))?;
    let bytes = load(file);
    let p = DhcpPacket::new_checked(&bytes[..]).map_err(|e| e.to_string())?;
    let repr = DhcpRepr::parse(&p).map_err(|e| e.to_string())?;
    let msg =
        dhcproto::v4::Message::decode(&mut Decoder::new(&bytes)).map_err(|e| e.to_string())?;
    let mut out = [0u8; 1500];
    let mut vec = Vec::with_capacity(1500);
    let mut run: Box<dyn FnMut() -> usize> = match work {
        "preboot" => Box::new(|| ours_walk(black_box(&bytes))),
        "preboot-pxe" => Box::new(|| ours_walk_pxe(black_box(&bytes))),
        "dhcproto-decode" => Box::new(|| theirs_decode(black_box(&bytes))),
        "dhcproto-borrowed" => Box::new(|| theirs_borrowed_walk(black_box(&bytes))),
        "build" => Box::new(|| ours_build(&repr, &mut out)),
        "dhcproto-encode" => Box::new(|| theirs_encode(&msg, &mut vec)),
        _ => return Err(format!("unknown work {work}")),
    };
    let mut sum = 0;
    for _ in 0..n {
        sum = run();
    }
    Ok(sum)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let (Some(work), Some(message), Some(n)) = (
            args.get(i + 1),
            args.get(i + 2),
            args.get(i + 3).and_then(|n| n.parse().ok()),
        ) else {
            eprintln!("usage: dhcp --repeat WORK MESSAGE N");
            std::process::exit(2);
        };
        match repeat(work, message, n) {
            Ok(sum) => println!("{work} {message} x{n}: checksum {sum}"),
            Err(e) => {
                eprintln!("dhcp --repeat: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let table_only = std::env::args().any(|a| a == "--table");
    if !table_only {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (then
    // criterion only runs each benchmark once, and there is no table).
    if table_only || std::env::args().any(|a| a == "--bench") {
        print_table();
    }
}
