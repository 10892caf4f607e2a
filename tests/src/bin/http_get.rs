//! `http_get http://HOST:PORT/PATH`: prints the body of a GET (exit 1 unless 200). The lab's
//! tests run it inside a node's network namespace to read its metrics.

use std::time::Duration;

fn main() -> std::process::ExitCode {
    let url = std::env::args().nth(1).unwrap_or_default();
    let Some((addr, path)) = url
        .strip_prefix("http://")
        .and_then(|r| r.find('/').map(|i| (&r[..i], &r[i..])))
    else {
        eprintln!("usage: http_get http://HOST:PORT/PATH");
        return std::process::ExitCode::from(2);
    };
    match p2pd_proto::http::get_blocking(addr, path, Duration::from_secs(10)) {
        Ok(r) if r.status == 200 => {
            print!("{}", r.body);
            std::process::ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("GET {url}: HTTP {}", r.status);
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("GET {url}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
