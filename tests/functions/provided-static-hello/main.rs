//! A `provided` bootstrap as small as a runtime gets: standard library only, linked statically,
//! speaking the Lambda Runtime API over one keep-alive HTTP/1.1 connection to
//! `AWS_LAMBDA_RUNTIME_API`, answering every event with `{"hello":"world"}`.
//!
//! Source only: `bench/warm.sh` compiles it with rustc into the package's `bootstrap` (the
//! warm-path benchmark of issue 11). Hand-written HTTP so that the function's own CPU per
//! invocation is as close to nothing as a real runtime can be.

use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process;
use std::thread;
use std::time::Duration;

const PREFIX: &str = "/2018-06-01/runtime";
const ANSWER: &[u8] = br#"{"hello":"world"}"#;
/// Largest header block or chunk-size line read from the Runtime API.
const MAX_LINE: usize = 64 * 1024;

/// One response of the Runtime API: status, the request id header (on `next`), and whether the
/// server keeps the connection open.
struct Reply {
    status: u16,
    request_id: Option<String>,
    keep_alive: bool,
}

fn main() {
    let Ok(api) = env::var("AWS_LAMBDA_RUNTIME_API") else {
        eprintln!("bootstrap: AWS_LAMBDA_RUNTIME_API is not set");
        process::exit(2);
    };
    let mut body = Vec::with_capacity(4096);
    loop {
        let Some(mut conn) = connect(&api) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        if let Err(e) = serve(&api, &mut conn, &mut body) {
            eprintln!("bootstrap: runtime api connection: {e}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn connect(api: &str) -> Option<Conn> {
    let stream = match TcpStream::connect(api) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bootstrap: cannot connect to {api}: {e}");
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let writer = stream.try_clone().ok()?;
    Some(Conn { reader: BufReader::with_capacity(16 * 1024, stream), writer })
}

/// Takes events and answers them on one connection until the server closes it or it fails.
fn serve(api: &str, conn: &mut Conn, body: &mut Vec<u8>) -> io::Result<()> {
    let next = format!("GET {PREFIX}/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n");
    let mut request = Vec::with_capacity(512);
    loop {
        conn.writer.write_all(next.as_bytes())?;
        let reply = read_reply(&mut conn.reader, body)?;
        let Some(id) = reply.request_id.filter(|_| reply.status == 200) else {
            return Err(io::Error::other(format!("invocation/next answered {}", reply.status)));
        };
        if !reply.keep_alive {
            // The event is taken: answer it on a new connection, then start over.
            *conn = connect(api).ok_or_else(|| io::Error::other("cannot reconnect"))?;
        }
        request.clear();
        write!(
            request,
            "POST {PREFIX}/invocation/{id}/response HTTP/1.1\r\nHost: {api}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            ANSWER.len()
        )?;
        request.extend_from_slice(ANSWER);
        conn.writer.write_all(&request)?;
        let reply = read_reply(&mut conn.reader, body)?;
        if reply.status != 202 {
            eprintln!("bootstrap: response for {id} answered {}", reply.status);
        }
        if !reply.keep_alive {
            return Ok(());
        }
    }
}

/// Reads one HTTP/1.1 response: the status line, the headers, and the body (Content-Length or
/// chunked) into `body`.
fn read_reply(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> io::Result<Reply> {
    let mut line = String::new();
    read_line(reader, &mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {:?}", line.trim_end())))?;
    let mut keep_alive = line.starts_with("HTTP/1.1");
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut request_id = None;
    let mut header_bytes = 0;
    loop {
        line.clear();
        read_line(reader, &mut line)?;
        header_bytes += line.len();
        if header_bytes > MAX_LINE {
            return Err(io::Error::other("header block too long"));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("lambda-runtime-aws-request-id") {
            request_id = Some(value.to_owned());
        }
    }
    body.clear();
    if chunked {
        loop {
            line.clear();
            read_line(reader, &mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                // trailers, up to the empty line
                loop {
                    line.clear();
                    read_line(reader, &mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(body)?;
    } else if status >= 200 && status != 204 && status != 304 {
        // neither length nor chunked: the body ends with the connection
        reader.read_to_end(body)?;
        keep_alive = false;
    }
    Ok(Reply { status, request_id, keep_alive })
}

fn read_line(reader: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<()> {
    let n = reader.by_ref().take(MAX_LINE as u64).read_line(line)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    Ok(())
}
