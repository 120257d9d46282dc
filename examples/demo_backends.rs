//! Tiny demo origin servers for the quick start: each address given on the
//! command line answers every request with a line naming itself and the path.
//!
//! `cargo run --example demo_backends -- 127.0.0.1:9001 127.0.0.1:9002`

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!("demo backend listening on {addr}");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let name = addr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut filled = 0;
            loop {
                let Ok(n) = sock.read(&mut buf[filled..]).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                filled += n;
                let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
                    if filled == buf.len() {
                        return;
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = format!("hello from demo backend {name}, path {path}\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {name}\r\n\r\n{body}",
                    body.len()
                );
                if sock.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                buf.copy_within(end + 4..filled, 0);
                filled -= end + 4;
            }
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addrs: Vec<String> = std::env::args().skip(1).collect();
    let addrs = if addrs.is_empty() {
        vec![
            "127.0.0.1:9001".into(),
            "127.0.0.1:9002".into(),
            "127.0.0.1:9003".into(),
        ]
    } else {
        addrs
    };
    let tasks: Vec<_> = addrs.into_iter().map(|a| tokio::spawn(serve(a))).collect();
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("demo backend failed: {e}");
            std::process::exit(1);
        }
    }
}
