//! The static file service against the real daemon (details are covered in loopd's own
//! http_service tests; this proves it is wired into the daemon).

use crate::support::{http_get, Daemon};

#[test]
fn serves_files_under_its_root_only() {
    let d = Daemon::start_services("pool");
    std::fs::write(d.dir.0.join("www/hello.txt"), "hello loopd\n").unwrap();
    std::fs::write(d.dir.0.join("secret.txt"), "not for you\n").unwrap();
    let addr = d.addr("http");
    assert_eq!(
        http_get(addr, "/hello.txt"),
        (200, "hello loopd\n".to_string())
    );
    assert_eq!(http_get(addr, "/nope.txt").0, 404);
    assert_eq!(http_get(addr, "/../secret.txt").0, 403);
    assert_eq!(http_get(addr, "/%2e%2e/secret.txt").0, 403);
}
