//! `http` under wrk (Debian `wrk`): 30 s against a mix of files, zero non-2xx answers for
//! valid paths, every body intact (issue 9, "load held").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::process::Command;

use support::Daemon;

/// File sizes: tiny, around a read chunk (64 KiB), and large.
const SIZES: [usize; 5] = [1, 1000, 65_536, 65_537, 1_048_576];

/// wrk script: cycles through the files; a response counts as bad unless it is a 200 whose
/// body has the announced length and is the file's byte repeated (`size % 251`).
const SCRIPT: &str = r#"
local sizes = { @SIZES@ }
local i = 0
local bad = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/f" .. sizes[(i % #sizes) + 1] .. ".bin")
end
response = function(status, headers, body)
  local n = #body
  local ok = status == 200
    and tonumber(headers["Content-Length"]) == n
    and body == string.rep(string.char(n % 251), n)
  if not ok then
    bad = bad + 1
    io.stderr:write("bad response: status " .. status .. ", " .. n .. " bytes\n")
  end
end
done = function(summary, latency, requests)
  io.write(string.format("requests=%d non2xx=%d errors=%d\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"#;

#[test]
fn wrk_for_30_s_gets_only_intact_200s() {
    let wrk = Command::new("wrk").arg("--version").output();
    assert!(
        wrk.is_ok(),
        "wrk is missing: run `bash scripts/test.sh`, which installs Debian's wrk"
    );
    let d = Daemon::start_services("pool");
    let www = d.dir.0.join("www");
    for n in SIZES {
        std::fs::write(www.join(format!("f{n}.bin")), vec![(n % 251) as u8; n]).unwrap();
    }
    let sizes = SIZES.map(|n| n.to_string()).join(", ");
    let script = d.dir.0.join("check.lua");
    std::fs::write(&script, SCRIPT.replace("@SIZES@", &sizes)).unwrap();
    let out = Command::new("wrk")
        .args(["-t2", "-c16", "-d30s", "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("http://{}/", d.addr("http")))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "wrk failed: {stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("requests="))
        .expect("wrk printed its summary");
    let field = |name: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(field("requests=") > 1000, "wrk made requests: {summary}");
    assert_eq!(field("non2xx="), 0, "{summary}");
    assert_eq!(field("errors="), 0, "{summary}");
    assert!(!stderr.contains("bad response"), "{stderr}");
}
