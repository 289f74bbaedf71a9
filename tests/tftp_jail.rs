//! Path-traversal corpus: hostile request names and symlinks leading out of
//! the root never read (or write) anything outside it (issue 3).

use std::os::unix::fs::symlink;

use preboot::driver::fs::JailedDir;
use preboot::fs::{FsError, ReadAt, ValidPath, WriteAt};

const SECRET: &[u8] = b"TOP SECRET outside the root";

fn corpus() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "../secret",
        "..",
        "../",
        "/../secret",
        "//../secret",
        "boot/../../secret",
        "boot/../secret",
        "boot/..",
        "./../secret",
        "./secret",
        "boot/./../../secret",
        "..\\secret",
        "boot\\..\\..\\secret",
        "\\..\\secret",
        "C:\\secret",
        "....//secret",
        "..../secret",
        ".../secret",
        "%2e%2e/secret",
        "%2e%2e%2fsecret",
        "..%2fsecret",
        "..%c0%afsecret",
        "\u{ff0e}\u{ff0e}/secret",
        "link-out",
        "link-out/",
        "dir-out/secret",
        "dir-out/../secret",
        "boot/dir-out/secret",
        "abs-link",
        "loop-a",
        "/etc/passwd",
        "etc/passwd",
        "/proc/self/environ",
        "proc/self/environ",
        "boot//file",
        "boot/",
        "/",
        "",
        " ../secret",
        "boot/file\n",
        "boot/file\r",
        "~/secret",
        "~root/secret",
        "fifo",
        "boot",
        "rel-up",
        "rel-up/secret",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(b"boot/file\0../secret".to_vec());
    v.push(b"\xff\xfe../secret".to_vec());
    v.push(b"\xc0\xae\xc0\xae/secret".to_vec());
    v.push([b"a/".repeat(600), b"secret".to_vec()].concat());
    v.push(vec![b'x'; 300]);
    v.push(b"../".repeat(40).into_iter().chain(*b"secret").collect());
    v
}

#[test]
fn hostile_names_never_read_outside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(tmp.path().join("secret"), SECRET).unwrap();
    std::fs::write(outside.join("secret"), SECRET).unwrap();
    std::fs::write(root.join("boot/file"), b"inside").unwrap();
    symlink(outside.join("secret"), root.join("link-out")).unwrap();
    symlink(&outside, root.join("dir-out")).unwrap();
    symlink(&outside, root.join("boot/dir-out")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    symlink("../outside", root.join("rel-up")).unwrap();
    symlink("loop-b", root.join("loop-a")).unwrap();
    symlink("loop-a", root.join("loop-b")).unwrap();
    symlink("boot/file", root.join("inside-link")).unwrap();
    let _ = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status();

    let jail = JailedDir::new(&root).unwrap();
    let mut checked = 0;
    for name in corpus() {
        let Ok(path) = ValidPath::new(&name) else {
            checked += 1;
            continue;
        };
        if let Ok(mut f) = jail.open_file(&path) {
            let mut buf = vec![0u8; 4096];
            let n = f.read_at(0, &mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                b"inside",
                "{:?} read outside data",
                String::from_utf8_lossy(&name)
            );
        }
        // Writing is refused too (or lands inside the root).
        if let Ok(mut up) = jail.create(&path) {
            assert!(up.target().starts_with(jail.root()), "{:?}", up.target());
            up.write_at(0, b"x").unwrap();
            drop(up); // not finished: the temporary file is removed
        }
        checked += 1;
    }
    assert!(checked >= 50, "corpus has {checked} names");
    assert_eq!(std::fs::read(tmp.path().join("secret")).unwrap(), SECRET);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing written outside"
    );
    // Symlinks out of the root: access denied, not "not found".
    for name in ["link-out", "dir-out/secret", "abs-link", "rel-up/secret"] {
        let p = ValidPath::new(name.as_bytes()).unwrap();
        assert_eq!(
            jail.open_file(&p).unwrap_err(),
            FsError::AccessDenied,
            "{name}"
        );
    }
    // A symlink that stays inside is served.
    let p = ValidPath::new(b"inside-link").unwrap();
    assert_eq!(jail.open_file(&p).unwrap().size(), 6);
    // GRUB's leading slash resolves inside the root.
    let p = ValidPath::new(b"/boot/file").unwrap();
    assert_eq!(jail.open_file(&p).unwrap().size(), 6);
    assert_eq!(
        jail.open_file(&ValidPath::new(b"nope").unwrap())
            .unwrap_err(),
        FsError::NotFound
    );
}

#[test]
fn uploads_land_atomically_and_never_overwrite_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("old"), b"old").unwrap();
    let jail = JailedDir::new(tmp.path())
        .unwrap()
        .with_uploads(false, Some(10));
    let p = ValidPath::new(b"old").unwrap();
    assert_eq!(jail.create(&p).unwrap_err(), FsError::AlreadyExists);
    let p = ValidPath::new(b"new").unwrap();
    let mut up = jail.create(&p).unwrap();
    up.write_at(0, b"12345").unwrap();
    assert!(!tmp.path().join("new").exists(), "invisible until complete");
    assert_eq!(up.write_at(5, b"678901"), Err(FsError::TooLarge));
    up.finish().unwrap();
    assert_eq!(std::fs::read(tmp.path().join("new")).unwrap(), b"12345");
    // A file that appeared meanwhile is not replaced.
    let mut up = jail.create(&ValidPath::new(b"race").unwrap()).unwrap();
    std::fs::write(tmp.path().join("race"), b"first").unwrap();
    up.write_at(0, b"second").unwrap();
    assert_eq!(up.finish(), Err(FsError::AlreadyExists));
    drop(up);
    assert_eq!(std::fs::read(tmp.path().join("race")).unwrap(), b"first");
    let jail = JailedDir::new(tmp.path()).unwrap().with_uploads(true, None);
    let mut up = jail.create(&ValidPath::new(b"old").unwrap()).unwrap();
    up.write_at(0, b"replaced").unwrap();
    up.finish().unwrap();
    assert_eq!(std::fs::read(tmp.path().join("old")).unwrap(), b"replaced");
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
}
