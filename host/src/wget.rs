//! `wget`, when the binary is called by that name: the few forms a
//! container's health checks use (`wget -q -O- URL`, `wget -q --spider
//! URL`, `wget --no-verbose --tries=1 --spider URL`), so that an image
//! holding only this binary answers the orchestrator's and compose's
//! probes. A plain HTTP/1.1 `GET` (no TLS, no redirects): exit status 0
//! on a 2xx answer, 1 otherwise, as BusyBox's `wget` (the one in the Go
//! service's Alpine image) does.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one attempt may take when `-T` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `--tries` beyond this is taken as this.
const MAX_TRIES: u32 = 20;
/// The pause between two tries.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The longest answer read (headers and body).
const MAX_ANSWER: usize = 64 << 20;

/// Whether the process was started as `wget` (a link to this binary).
pub fn invoked_as_wget() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|argv0| argv0.file_name().map(|name| name == "wget"))
        .unwrap_or(false)
}

/// Runs `wget` with `args` (without the program name); the exit status.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("wget: {problem}");
            eprintln!(
                "usage: wget [-q] [--no-verbose] [--spider] [-O FILE|-O-] [--tries=N] [-T SEC] [--header=H] http://URL"
            );
            return 1;
        }
    };
    match options.run() {
        Ok(()) => 0,
        Err(problem) => {
            if !options.quiet {
                eprintln!("wget: {problem}");
            }
            1
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    url: String,
    quiet: bool,
    spider: bool,
    /// `-O`: `None` for the URL's file name, `Some("-")` for stdout.
    output: Option<String>,
    tries: u32,
    timeout: Duration,
    headers: Vec<String>,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
        let mut args = args.into_iter().map(|a| {
            a.into_string()
                .map_err(|_| "arguments must be UTF-8".to_owned())
        });
        let mut options = Options {
            url: String::new(),
            quiet: false,
            spider: false,
            output: None,
            tries: 1,
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
        };
        let mut urls = Vec::new();
        while let Some(arg) = args.next() {
            let arg = arg?;
            let mut next_value = |name: &str| -> Result<String, String> {
                args.next()
                    .transpose()?
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (long, None),
                };
                match name {
                    "quiet" => options.quiet = true,
                    "no-verbose" | "verbose" => {}
                    "spider" => options.spider = true,
                    "output-document" | "tries" | "timeout" | "header" => {
                        let value = match inline {
                            Some(value) => value,
                            None => next_value(&arg)?,
                        };
                        options.set(name, value)?;
                    }
                    _ => return Err(format!("unsupported option {arg}")),
                }
            } else if arg == "-nv" {
                // GNU's short --no-verbose.
            } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
                // Short options, clustered as in `-qO-` or `-qO file`.
                for (at, flag) in cluster.char_indices() {
                    let name = match flag {
                        'q' => {
                            options.quiet = true;
                            continue;
                        }
                        'v' => continue,
                        'O' => "output-document",
                        't' => "tries",
                        'T' => "timeout",
                        _ => return Err(format!("unsupported option -{flag}")),
                    };
                    let rest = &cluster[at + flag.len_utf8()..];
                    let value = if rest.is_empty() {
                        next_value(&format!("-{flag}"))?
                    } else {
                        rest.to_owned()
                    };
                    options.set(name, value)?;
                    break;
                }
            } else {
                urls.push(arg);
            }
        }
        options.url = match urls.as_slice() {
            [url] => url.clone(),
            [] => return Err("missing URL".into()),
            _ => return Err("one URL at a time".into()),
        };
        Ok(options)
    }

    /// Sets the option `name` (its long name) to `value`.
    fn set(&mut self, name: &str, value: String) -> Result<(), String> {
        match name {
            "output-document" => self.output = Some(value),
            "tries" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| format!("--tries {value:?} is not a number"))?;
                // 0 means "as often as it takes" to GNU wget: bounded here.
                self.tries = if n == 0 { MAX_TRIES } else { n.min(MAX_TRIES) };
            }
            "timeout" => {
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--timeout {value:?} is not a number of seconds"))?;
                self.timeout = Duration::from_secs_f64(secs.min(3600.0));
            }
            "header" => {
                if !value.contains(':') || value.contains(['\r', '\n']) {
                    return Err(format!("--header {value:?} is not `Name: value`"));
                }
                self.headers.push(value);
            }
            _ => unreachable!("only the options above take a value"),
        }
        Ok(())
    }

    fn run(&self) -> Result<(), String> {
        let target = Target::parse(&self.url)?;
        let mut tries = 0;
        let answer = loop {
            tries += 1;
            match get(&target, &self.headers, self.timeout) {
                Ok(answer) => break answer,
                Err(problem) if tries >= self.tries => return Err(problem),
                Err(_) => std::thread::sleep(RETRY_PAUSE),
            }
        };
        if !(200..300).contains(&answer.status) {
            return Err(format!("server returned error: {}", answer.status_line));
        }
        if self.spider {
            if !self.quiet {
                eprintln!(
                    "wget: {}: {}, remote file exists",
                    self.url, answer.status_line
                );
            }
            return Ok(());
        }
        match self.output.as_deref() {
            Some("-") => std::io::stdout()
                .write_all(&answer.body)
                .and_then(|()| std::io::stdout().flush())
                .map_err(|e| format!("writing to standard output: {e}")),
            Some(path) => write_file(Path::new(path), &answer.body),
            None => write_file(Path::new(target.file_name()), &answer.body),
        }
    }
}

fn write_file(path: &Path, body: &[u8]) -> Result<(), String> {
    std::fs::write(path, body).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// An `http://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// As the `Host` header gives it (with the port when one was given).
    authority: String,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_owned()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_owned()),
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        let bad = || format!("{url}: bad host or port");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, p)) => (host.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), 80),
            }
        };
        if host.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Target {
            authority: authority.to_owned(),
            host,
            port,
            path,
        })
    }

    /// Where a download without `-O` goes: the path's last segment.
    fn file_name(&self) -> &str {
        let path = self.path.split('?').next().unwrap_or("");
        match path.rsplit('/').next() {
            Some("") | None => "index.html",
            Some(name) => name,
        }
    }
}

/// A whole answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    status_line: String,
    body: Vec<u8>,
}

/// One `GET`, within `timeout` overall.
fn get(target: &Target, headers: &[String], timeout: Duration) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("bad address '{}': {e}", target.host))?
        .collect();
    let mut last = format!("bad address '{}'", target.host);
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("can't connect to remote host ({addr}): {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Wget (cronium-runtime)\r\nAccept: */*\r\nConnection: close\r\n",
        target.path, target.authority
    );
    for header in headers {
        request.push_str(header.trim());
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| format!("{}: {e}", target.authority);
    stream
        .set_write_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{}: timed out", target.authority));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        }
        if raw.len() > MAX_ANSWER {
            return Err(format!(
                "{}: answer larger than {MAX_ANSWER} bytes",
                target.authority
            ));
        }
        if let Some(answer) = complete(&raw, false)? {
            return Ok(answer);
        }
    }
    complete(&raw, true)?.ok_or_else(|| format!("{}: connection closed early", target.authority))
}

/// The answer in `raw`, once all of it has arrived: by `Content-Length`,
/// by chunked encoding, or, when neither is given, at the end of the
/// connection (`at_eof`).
fn complete(raw: &[u8], at_eof: bool) -> Result<Option<Answer>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "unreadable answer".to_owned())?;
    let status_line = head.split("\r\n").next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let body = &raw[end + 4..];
    let answer = |body: Vec<u8>| Answer {
        status,
        status_line: status_line.clone(),
        body,
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(dechunk(body)?.map(answer));
    }
    match header("content-length") {
        Some(length) => {
            let length: usize = length
                .parse()
                .map_err(|_| format!("bad Content-Length {length:?}"))?;
            Ok((body.len() >= length).then(|| answer(body[..length].to_vec())))
        }
        // Neither: the body ends with the connection.
        None => Ok(at_eof.then(|| answer(body.to_vec()))),
    }
}

/// A chunked body decoded, once its last chunk has arrived.
fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&body[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if body.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_three_forms_of_the_health_checks_parse() {
        let o = Options::parse(args("-q -O- http://localhost:8081/health")).unwrap();
        assert!(o.quiet && !o.spider);
        assert_eq!(o.output.as_deref(), Some("-"));
        let o = Options::parse(args("-q --spider http://localhost:8081/health")).unwrap();
        assert!(o.quiet && o.spider);
        let o = Options::parse(args(
            "--no-verbose --tries=1 --spider http://localhost:8081/health",
        ))
        .unwrap();
        assert!(o.spider && o.tries == 1 && !o.quiet);
        assert_eq!(o.url, "http://localhost:8081/health");
        let o = Options::parse(args("-qO- -T 2 http://a/")).unwrap();
        assert!(o.quiet && o.output.as_deref() == Some("-"));
        assert_eq!(o.timeout, Duration::from_secs(2));
        let o = Options::parse(args("-O /tmp/x --header Authorization:x http://a/")).unwrap();
        assert_eq!(o.output.as_deref(), Some("/tmp/x"));
        assert_eq!(o.headers, ["Authorization:x"]);
        assert!(Options::parse(args("-q --post-data=x http://a/")).is_err());
        assert!(Options::parse(args("-q --header=nocolon http://a/")).is_err());
        assert!(Options::parse(args("-q")).is_err());
    }

    #[test]
    fn urls_split_into_host_port_and_path() {
        let t = Target::parse("http://localhost:8081/health").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 8081, "/health")
        );
        let t = Target::parse("http://[::1]/x?y=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 80, "/x?y=1")
        );
        assert_eq!(Target::parse("http://h?q").unwrap().path, "/?q");
        assert!(Target::parse("https://h/").is_err());
        assert!(Target::parse("http://h:port/").is_err());
    }

    #[test]
    fn answers_are_complete_by_length_or_last_chunk() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let a = complete(by_length, false).unwrap().unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
        assert!(
            complete(&by_length[..by_length.len() - 1], false)
                .unwrap()
                .is_none()
        );
        let until_closed = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert!(complete(until_closed, false).unwrap().is_none());
        assert_eq!(
            complete(until_closed, true).unwrap().unwrap().body,
            b"all of it"
        );
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        let a = complete(chunked, false).unwrap().unwrap();
        assert_eq!((a.status, a.body.as_slice()), (503, &b"abcd"[..]));
    }

    /// Serves one connection with `answer`, returning what the client sent.
    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, server)
    }

    #[test]
    fn a_2xx_answer_exits_0_and_anything_else_1() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine");
        let code = main(args(&format!("-q --header=X-Probe:1 --spider {url}")));
        let request = server.join().unwrap();
        assert_eq!(code, 0);
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nX-Probe:1\r\n"), "{request}");

        let (url, server) =
            serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(main(args(&format!("-q -O- {url}"))), 1);
        server.join().unwrap();

        // Nothing listens there any more.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(
            main(args(&format!(
                "--no-verbose --tries=1 --spider http://{closed}/health"
            ))),
            1
        );
    }
}
