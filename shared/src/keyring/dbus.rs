//! A minimal blocking D-Bus client: one Unix socket, no threads, no executor.
//!
//! The helper makes a handful of calls and exits, so a general-purpose bus library costs more than the calls
//! themselves: zbus's blocking API runs a socket-reader task on an executor thread beside an async-io
//! reactor thread, and every reply hops across both before the caller wakes. Here the calling thread
//! writes requests and reads replies itself. Requests are queued and flushed together when a reply is
//! awaited, so the SASL handshake, `Hello` and the first calls share one round trip.
//!
//! Only what the Secret Service needs is implemented: method calls, their replies and errors, and signals.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

/// Where a session bus answers when `DBUS_SESSION_BUS_ADDRESS` is unset (the systemd user bus).
const RUNTIME_BUS: &str = "bus";
/// A message larger than this is refused (the specification's limit is 128 MiB; ours are tiny).
const MAX_MESSAGE: usize = 64 << 20;
/// Variants nest inside variants only as deep as this, so a hostile message cannot exhaust the stack.
const MAX_DEPTH: u32 = 32;
/// Containers of any kind (arrays, structs, dict entries and variants) nest only as deep as this, for the
/// same reason: the signature in the header, which a hostile peer may send as a string of any length,
/// would otherwise set the decoder's recursion. libdbus, which the bus daemon validates messages with,
/// refuses deeper nesting too (the specification's 32 nested arrays plus 32 nested structs).
const MAX_NESTING: u32 = 64;
/// A signature is at most this long (its length is one byte on the wire).
const MAX_SIGNATURE: usize = 255;

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

/// Why a bus operation failed.
#[derive(Debug)]
pub(super) enum BusError {
    /// No bus could be reached or it refused us (socket, address or authentication).
    Connect(String),
    /// The callee answered with a D-Bus error.
    Method {
        /// The error name, e.g. `org.freedesktop.DBus.Error.ServiceUnknown`.
        name: String,
        /// The error's human text.
        message: String,
    },
    /// The connection broke or carried something that is not D-Bus.
    Protocol(String),
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Connect(reason) | BusError::Protocol(reason) => f.write_str(reason),
            BusError::Method { name, message } if message.is_empty() => f.write_str(name),
            BusError::Method { name, message } => write!(f, "{name}: {message}"),
        }
    }
}

impl BusError {
    /// The D-Bus error name when the callee refused the call.
    pub(super) fn name(&self) -> Option<&str> {
        match self {
            BusError::Method { name, .. } => Some(name),
            _ => None,
        }
    }
}

fn broken(error: std::io::Error) -> BusError {
    BusError::Protocol(format!("the D-Bus connection failed: {error}"))
}

fn malformed(what: &str) -> BusError {
    BusError::Protocol(format!("malformed D-Bus message ({what})"))
}

/// A decoded D-Bus value. Strings, object paths and signatures are all [`Value::Str`]; `ay` is
/// [`Value::Bytes`]; dict entries are two-field structs.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// `b`.
    Bool(bool),
    /// `y`, `n`, `q`, `i`, `u`, `h`, `x`, `t` (signed values as their two's-complement bits).
    Int(u64),
    /// `d`.
    Double(f64),
    /// `s`, `o`, `g`.
    Str(String),
    /// `ay`.
    Bytes(Vec<u8>),
    /// Any other array.
    Array(Vec<Value>),
    /// `(…)` and `{…}`.
    Struct(Vec<Value>),
    /// `v`.
    Variant(Box<Value>),
}

impl Value {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            // An empty `ay` inside a variant may have been written as a generic array.
            Value::Array(items) if items.is_empty() => Some(&[]),
            _ => None,
        }
    }

    pub(super) fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            Value::Bytes(bytes) if bytes.is_empty() => Some(&[]),
            _ => None,
        }
    }

    pub(super) fn as_fields(&self) -> Option<&[Value]> {
        match self {
            Value::Struct(fields) => Some(fields),
            _ => None,
        }
    }

    pub(super) fn as_int(&self) -> Option<u64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The content of a variant (a value that is not one stands for itself).
    pub(super) fn unwrap_variant(&self) -> &Value {
        match self {
            Value::Variant(inner) => inner.unwrap_variant(),
            other => other,
        }
    }

    /// An `ao` as paths.
    pub(super) fn as_paths(&self) -> Option<Vec<String>> {
        self.as_array()?
            .iter()
            .map(|path| path.as_str().map(str::to_owned))
            .collect()
    }

    /// The value under `key` in an `a{s…}` dictionary.
    pub(super) fn lookup(&self, key: &str) -> Option<&Value> {
        self.as_array()?
            .iter()
            .find_map(|entry| match entry.as_fields()? {
                [k, v] if k.as_str() == Some(key) => Some(v),
                _ => None,
            })
    }
}

/// A message body being marshalled, with its signature. Alignment is relative to the body start, which the
/// header padding puts on an 8-byte boundary of the message.
pub(super) struct Body {
    signature: &'static str,
    buf: Vec<u8>,
}

impl Body {
    /// An empty body that will hold values of `signature` (written by the caller in that order).
    pub(super) fn new(signature: &'static str) -> Self {
        Body {
            signature,
            buf: Vec::with_capacity(128),
        }
    }

    fn align(&mut self, to: usize) {
        self.buf.resize(self.buf.len().next_multiple_of(to), 0);
    }

    pub(super) fn u32(&mut self, value: u32) -> &mut Self {
        self.align(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(super) fn bool(&mut self, value: bool) -> &mut Self {
        self.u32(u32::from(value))
    }

    /// An `s` or `o`.
    pub(super) fn str(&mut self, value: &str) -> &mut Self {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self
    }

    /// A `g` (a signature: at most 255 bytes by construction at our call sites).
    fn signature(&mut self, value: &str) -> &mut Self {
        self.buf.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self
    }

    /// An `ay`.
    pub(super) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(value);
        self
    }

    /// An array whose elements (aligned to `element_align`) `write` appends.
    pub(super) fn array(
        &mut self,
        element_align: usize,
        write: impl FnOnce(&mut Self),
    ) -> &mut Self {
        self.u32(0);
        let length_at = self.buf.len() - 4;
        self.align(element_align);
        let start = self.buf.len();
        write(self);
        let length = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
        self
    }

    /// A struct or dict entry whose fields `write` appends.
    pub(super) fn structure(&mut self, write: impl FnOnce(&mut Self)) -> &mut Self {
        self.align(8);
        write(self);
        self
    }

    /// A variant holding one value of `signature`, which `write` appends.
    pub(super) fn variant(&mut self, signature: &str, write: impl FnOnce(&mut Self)) -> &mut Self {
        self.signature(signature);
        write(self);
        self
    }

    /// An `a{ss}`.
    pub(super) fn string_dict(&mut self, entries: &[(&str, &str)]) -> &mut Self {
        self.array(8, |body| {
            for (key, value) in entries {
                body.structure(|entry| {
                    entry.str(key).str(value);
                });
            }
        })
    }
}

/// A received message.
pub(super) struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    path: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    error_name: Option<String>,
    signature: String,
    big_endian: bool,
    body: Vec<u8>,
}

impl Message {
    /// The body's values, in order.
    pub(super) fn values(&self) -> Result<Vec<Value>, BusError> {
        let mut reader = Reader {
            data: &self.body,
            pos: 0,
            big_endian: self.big_endian,
        };
        let signature = self.signature.as_bytes();
        check_signature(signature)?;
        let mut at = 0;
        let mut values = Vec::new();
        while at < signature.len() {
            values.push(reader.value(signature, &mut at, Depth::default())?);
        }
        Ok(values)
    }

    /// Whether this is the signal `interface.member` emitted on `path`.
    pub(super) fn is_signal(&self, path: &str, interface: &str, member: &str) -> bool {
        self.kind == SIGNAL
            && self.path.as_deref() == Some(path)
            && self.interface.as_deref() == Some(interface)
            && self.member.as_deref() == Some(member)
    }
}

/// A connection to the session bus.
pub(super) struct Bus {
    reader: BufReader<UnixStream>,
    /// Requests not yet written: they go out together when a reply is awaited.
    out: Vec<u8>,
    /// Whether the server's SASL `OK` line is still to be read.
    authenticating: bool,
    serial: u32,
    /// Messages read while waiting for another one.
    pending: VecDeque<Message>,
}

impl Bus {
    /// Connects to the session bus (`DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`, else
    /// `/run/user/<uid>/bus`). Authentication and `Hello` are queued and complete with the first reply.
    pub(super) fn session() -> Result<Bus, BusError> {
        let stream = match std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
            Some(address) => connect_address(&address.to_string_lossy())?,
            None => {
                let path = match std::env::var_os("XDG_RUNTIME_DIR") {
                    Some(dir) => std::path::PathBuf::from(dir).join(RUNTIME_BUS),
                    None => format!("/run/user/{}/{RUNTIME_BUS}", uid()?).into(),
                };
                UnixStream::connect(&path).map_err(|e| {
                    BusError::Connect(format!(
                        "failed to connect to `unix:path={}`: {e}",
                        path.display()
                    ))
                })?
            }
        };
        let mut out = Vec::with_capacity(1024);
        // EXTERNAL authenticates by the socket's peer credentials; the identity sent is our uid in hex
        // digits of its decimal text, as the specification requires.
        let uid_hex: String = uid()?
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push(0);
        out.extend_from_slice(format!("AUTH EXTERNAL {uid_hex}\r\nBEGIN\r\n").as_bytes());
        let mut bus = Bus {
            reader: BufReader::new(stream),
            out,
            authenticating: true,
            serial: 0,
            pending: VecDeque::new(),
        };
        // The bus drops a connection whose first message is not Hello; its reply (our unique name) is
        // not needed and stays unread in `pending` at worst.
        bus.send(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &Body::new(""),
        );
        Ok(bus)
    }

    /// Queues a method call and returns its serial; [`Bus::reply`] sends it.
    pub(super) fn send(
        &mut self,
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        body: &Body,
    ) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        let mut fields = Body::new("");
        // The header is marshalled as the body of a fixed 12-byte prefix: `a(yv)` starting at offset 12
        // keeps every alignment right when `fields` is appended at that offset.
        fields.buf.extend_from_slice(&[0; 12]);
        fields.array(8, |f| {
            let mut field = |code: u8, signature: &str, value: &str| {
                f.structure(|entry| {
                    entry.buf.push(code);
                    entry.variant(signature, |v| {
                        if signature == "g" {
                            v.signature(value);
                        } else {
                            v.str(value);
                        }
                    });
                });
            };
            field(1, "o", path);
            field(2, "s", interface);
            field(3, "s", member);
            field(6, "s", destination);
            if !body.signature.is_empty() {
                field(8, "g", body.signature);
            }
        });
        fields.align(8);
        let body_len = u32::try_from(body.buf.len()).unwrap_or(u32::MAX);
        fields.buf[..4].copy_from_slice(&[b'l', METHOD_CALL, 0, 1]);
        fields.buf[4..8].copy_from_slice(&body_len.to_le_bytes());
        fields.buf[8..12].copy_from_slice(&self.serial.to_le_bytes());
        self.out.extend_from_slice(&fields.buf);
        self.out.extend_from_slice(&body.buf);
        self.serial
    }

    /// Sends a method call and waits for its answer.
    pub(super) fn call(
        &mut self,
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        body: &Body,
    ) -> Result<Vec<Value>, BusError> {
        let serial = self.send(destination, path, interface, member, body);
        self.reply(serial)
    }

    /// Sends every queued request, then waits for the answer to `serial`: its values, or the error it
    /// carried.
    pub(super) fn reply(&mut self, serial: u32) -> Result<Vec<Value>, BusError> {
        let message = self
            .wait(|m| matches!(m.kind, METHOD_RETURN | ERROR) && m.reply_serial == Some(serial))?;
        let values = message.values()?;
        if message.kind == ERROR {
            let text = values.first().and_then(Value::as_str).unwrap_or_default();
            return Err(BusError::Method {
                name: message.error_name.unwrap_or_default(),
                message: text.to_owned(),
            });
        }
        Ok(values)
    }

    /// Sends every queued request, then waits for the first message `wanted` accepts (one already read
    /// counts too).
    pub(super) fn wait(&mut self, wanted: impl Fn(&Message) -> bool) -> Result<Message, BusError> {
        if let Some(at) = self.pending.iter().position(&wanted)
            && let Some(message) = self.pending.remove(at)
        {
            return Ok(message);
        }
        self.flush()?;
        loop {
            let message = self.read()?;
            if wanted(&message) {
                return Ok(message);
            }
            // Nobody serves calls addressed to us; everything else may be awaited later.
            if message.kind != METHOD_CALL {
                self.pending.push_back(message);
            }
        }
    }

    /// Sends every queued request now, so the far end can work on them while we compute.
    pub(super) fn flush(&mut self) -> Result<(), BusError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let connect_failed = self.authenticating;
        self.reader.get_mut().write_all(&self.out).map_err(|e| {
            if connect_failed {
                BusError::Connect(format!("the D-Bus session bus closed the connection: {e}"))
            } else {
                broken(e)
            }
        })?;
        self.out.clear();
        Ok(())
    }

    fn read(&mut self) -> Result<Message, BusError> {
        if self.authenticating {
            let mut line = Vec::new();
            (&mut self.reader)
                .take(4096)
                .read_until(b'\n', &mut line)
                .map_err(|e| BusError::Connect(format!("D-Bus authentication failed: {e}")))?;
            if !line.starts_with(b"OK ") {
                return Err(BusError::Connect(format!(
                    "the D-Bus session bus refused authentication: {}",
                    String::from_utf8_lossy(&line).trim()
                )));
            }
            self.authenticating = false;
        }
        let mut fixed = [0u8; 16];
        self.reader.read_exact(&mut fixed).map_err(broken)?;
        let big_endian = match fixed[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(malformed("byte order")),
        };
        let word = |at: usize| {
            let bytes = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
            if big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        let (body_len, fields_len) = (word(4) as usize, word(12) as usize);
        let header_len = (16 + fields_len).next_multiple_of(8);
        let total = header_len.saturating_add(body_len);
        if total > MAX_MESSAGE {
            return Err(malformed("too large"));
        }
        let mut data = vec![0u8; total];
        data[..16].copy_from_slice(&fixed);
        self.reader.read_exact(&mut data[16..]).map_err(broken)?;
        let body = data.split_off(header_len);
        let mut reader = Reader {
            data: &data,
            pos: 12,
            big_endian,
        };
        let mut message = Message {
            kind: fixed[1],
            reply_serial: None,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            signature: String::new(),
            big_endian,
            body,
        };
        let fields = reader.value(b"a(yv)", &mut 0, Depth::default())?;
        for field in fields.as_array().unwrap_or_default() {
            let Some([code, value]) = field.as_fields() else {
                return Err(malformed("header field"));
            };
            let value = value.unwrap_variant();
            let text = || value.as_str().map(str::to_owned);
            match code.as_int() {
                Some(1) => message.path = text(),
                Some(2) => message.interface = text(),
                Some(3) => message.member = text(),
                Some(4) => message.error_name = text(),
                Some(5) => {
                    message.reply_serial = value.as_int().and_then(|n| u32::try_from(n).ok())
                }
                Some(8) => message.signature = text().unwrap_or_default(),
                _ => {}
            }
        }
        Ok(message)
    }
}

/// Connects to the first address of a D-Bus address list that answers (`unix:path=` and
/// `unix:abstract=`, the transports session buses use).
fn connect_address(list: &str) -> Result<UnixStream, BusError> {
    let mut last = format!("no usable address in `{list}`");
    for address in list.split(';').filter(|a| !a.is_empty()) {
        let Some(("unix", params)) = address.split_once(':') else {
            last = format!(
                "unsupported D-Bus transport in `{address}`: only `unix:` addresses are supported"
            );
            continue;
        };
        for (key, value) in params.split(',').filter_map(|p| p.split_once('=')) {
            let value = crate::percent::decode(value);
            let connected = match key {
                "path" => UnixStream::connect(std::ffi::OsStr::from_bytes(&value)),
                "abstract" => {
                    use std::os::linux::net::SocketAddrExt;
                    std::os::unix::net::SocketAddr::from_abstract_name(&value)
                        .and_then(|name| UnixStream::connect_addr(&name))
                }
                _ => continue,
            };
            match connected {
                Ok(stream) => return Ok(stream),
                Err(e) => last = format!("failed to connect to `{address}`: {e}"),
            }
        }
    }
    Err(BusError::Connect(last))
}

/// Our user id, which EXTERNAL authentication names: the owner of `/proc/self` (std has no `getuid`).
fn uid() -> Result<u32, BusError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|meta| meta.uid())
        .map_err(|e| {
            BusError::Connect(format!("cannot determine the user id from /proc/self: {e}"))
        })
}

/// How deep a value sits: how many variants and how many containers of any kind enclose it.
#[derive(Clone, Copy, Default)]
struct Depth {
    variants: u32,
    containers: u32,
}

impl Depth {
    /// The depth of the content of a container (a variant if `variant`) at this depth.
    fn inside(self, variant: bool) -> Result<Depth, BusError> {
        if self.containers >= MAX_NESTING || (variant && self.variants >= MAX_DEPTH) {
            return Err(malformed("nested too deeply"));
        }
        Ok(Depth {
            variants: self.variants + u32::from(variant),
            containers: self.containers + 1,
        })
    }
}

/// Unmarshals values from a message part.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl Reader<'_> {
    fn align(&mut self, to: usize) -> Result<(), BusError> {
        let aligned = self.pos.next_multiple_of(to);
        if aligned > self.data.len() {
            return Err(malformed("truncated"));
        }
        self.pos = aligned;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], BusError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let end = end.ok_or_else(|| malformed("truncated"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn uint(&mut self, size: usize) -> Result<u64, BusError> {
        self.align(size)?;
        let big_endian = self.big_endian;
        let bytes = self.take(size)?;
        let mut value = 0u64;
        for i in 0..size {
            let byte = if big_endian {
                bytes[i]
            } else {
                bytes[size - 1 - i]
            };
            value = (value << 8) | u64::from(byte);
        }
        Ok(value)
    }

    fn string(&mut self, length: usize) -> Result<String, BusError> {
        let bytes = self.take(length)?.to_vec();
        self.take(1)?;
        String::from_utf8(bytes).map_err(|_| malformed("string is not UTF-8"))
    }

    /// Reads one complete type starting at `signature[*at]`, leaving `*at` after it.
    fn value(&mut self, signature: &[u8], at: &mut usize, depth: Depth) -> Result<Value, BusError> {
        let code = *signature.get(*at).ok_or_else(|| malformed("signature"))?;
        *at += 1;
        Ok(match code {
            b'y' => Value::Int(self.uint(1)?),
            b'n' | b'q' => Value::Int(self.uint(2)?),
            b'i' | b'u' | b'h' => Value::Int(self.uint(4)?),
            b'x' | b't' => Value::Int(self.uint(8)?),
            b'd' => Value::Double(f64::from_bits(self.uint(8)?)),
            b'b' => Value::Bool(self.uint(4)? != 0),
            b's' | b'o' => {
                let length = self.uint(4)? as usize;
                Value::Str(self.string(length)?)
            }
            b'g' => {
                let length = self.uint(1)? as usize;
                Value::Str(self.string(length)?)
            }
            b'v' => {
                let inner_depth = depth.inside(true)?;
                let length = self.uint(1)? as usize;
                let inner = self.string(length)?;
                check_signature(inner.as_bytes())?;
                let mut inner_at = 0;
                let value = self.value(inner.as_bytes(), &mut inner_at, inner_depth)?;
                if inner_at != inner.len() {
                    return Err(malformed("variant signature"));
                }
                Value::Variant(Box::new(value))
            }
            b'a' => {
                let length = self.uint(4)? as usize;
                let element = *at;
                skip_type(signature, at)?;
                self.align(alignment(signature[element]))?;
                let end = self
                    .pos
                    .checked_add(length)
                    .filter(|&end| end <= self.data.len())
                    .ok_or_else(|| malformed("array length"))?;
                if signature[element] == b'y' {
                    return Ok(Value::Bytes(self.take(length)?.to_vec()));
                }
                let mut items = Vec::new();
                while self.pos < end {
                    let before = self.pos;
                    let mut element_at = element;
                    // Checked per element: only values that are there nest, so an empty array still
                    // decodes at the deepest level.
                    let inner_depth = depth.inside(false)?;
                    items.push(self.value(signature, &mut element_at, inner_depth)?);
                    // An element that takes no bytes would repeat until memory runs out. Only an empty
                    // struct can, which `check_signature` refuses; this holds should that check miss one.
                    if self.pos == before {
                        return Err(malformed("array element of no size"));
                    }
                }
                if self.pos != end {
                    return Err(malformed("array length"));
                }
                Value::Array(items)
            }
            b'(' | b'{' => {
                let inner_depth = depth.inside(false)?;
                self.align(8)?;
                let close = if code == b'(' { b')' } else { b'}' };
                let mut fields = Vec::new();
                while signature.get(*at) != Some(&close) {
                    fields.push(self.value(signature, at, inner_depth)?);
                }
                *at += 1;
                Value::Struct(fields)
            }
            _ => return Err(malformed("unsupported type")),
        })
    }
}

/// Refuses a signature the specification forbids in a way the decoder cannot meet where it reads: longer
/// than [`MAX_SIGNATURE`], or holding a struct or dict entry without fields (`()`, `{}`), which takes no
/// bytes, so that an array of them has no end. Other mistakes (unknown codes, unbalanced brackets) fail
/// where the decoder reaches them.
fn check_signature(signature: &[u8]) -> Result<(), BusError> {
    if signature.len() > MAX_SIGNATURE {
        return Err(malformed("signature too long"));
    }
    let empty = signature
        .windows(2)
        .any(|pair| pair == b"()" || pair == b"{}");
    if empty {
        return Err(malformed("empty struct"));
    }
    Ok(())
}

/// Moves `*at` past one complete type.
fn skip_type(signature: &[u8], at: &mut usize) -> Result<(), BusError> {
    let mut open = 0usize;
    loop {
        let code = *signature.get(*at).ok_or_else(|| malformed("signature"))?;
        *at += 1;
        match code {
            b'a' => continue,
            b'(' | b'{' => open += 1,
            b')' | b'}' => open = open.checked_sub(1).ok_or_else(|| malformed("signature"))?,
            _ => {}
        }
        if open == 0 {
            return Ok(());
        }
    }
}

fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// A method return carrying `body` under `signature`, as read from the bus.
    fn reply(signature: String, big_endian: bool, body: Vec<u8>) -> Message {
        Message {
            kind: METHOD_RETURN,
            reply_serial: None,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            signature,
            big_endian,
            body,
        }
    }

    /// `run`'s answer, or an abort if it takes seconds: a decoder that never returns then fails the
    /// suite instead of hanging it, and the whole process ends because the runaway thread cannot be
    /// stopped and would go on allocating.
    fn within<T: Send + 'static>(what: String, run: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(run()));
        match answer.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(answer) => answer,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Past the test harness's capture, which the abort would discard.
                let line = format!("the D-Bus decoder did not return for {what}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                std::process::abort();
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }

    /// The body's values, decoded with [`within`].
    fn decode_within(
        signature: &str,
        big_endian: bool,
        body: Vec<u8>,
    ) -> Result<Vec<Value>, BusError> {
        let (what, signature) = (format!("`{signature}`, {body:?}"), signature.to_owned());
        within(what, move || reply(signature, big_endian, body).values())
    }

    /// How many values `values` holds, nested ones included.
    fn count(values: &[Value]) -> usize {
        values
            .iter()
            .map(|value| {
                1 + match value {
                    Value::Array(items) | Value::Struct(items) => count(items),
                    Value::Variant(inner) => count(std::slice::from_ref(inner)),
                    _ => 0,
                }
            })
            .sum()
    }

    fn decode(body: &Body) -> Vec<Value> {
        reply(body.signature.to_owned(), false, body.buf.clone())
            .values()
            .unwrap()
    }

    #[test]
    fn bodies_round_trip() {
        let mut body = Body::new("a{sv}(oayays)bao");
        body.array(8, |props| {
            props.structure(|entry| {
                entry.str("Label").variant("s", |v| {
                    v.str("h");
                });
            });
            props.structure(|entry| {
                entry.str("Attributes").variant("a{ss}", |v| {
                    v.string_dict(&[("server", "h"), ("docker_cli", "1")]);
                });
            });
        });
        body.structure(|secret| {
            secret
                .str("/s/1")
                .bytes(&[1, 2, 3])
                .bytes("é\u{0}".as_bytes())
                .str("text/plain");
        });
        body.bool(true);
        body.array(4, |paths| {
            paths.str("/a").str("/b");
        });
        let values = decode(&body);
        let props = &values[0];
        assert_eq!(
            props.lookup("Label").map(Value::unwrap_variant),
            Some(&Value::Str("h".into()))
        );
        let attributes = props.lookup("Attributes").unwrap().unwrap_variant();
        assert_eq!(
            attributes.lookup("docker_cli").and_then(Value::as_str),
            Some("1")
        );
        let secret = values[1].as_fields().unwrap();
        assert_eq!(secret[2].as_bytes(), Some("é\u{0}".as_bytes()));
        assert_eq!(values[2], Value::Bool(true));
        assert_eq!(values[3].as_paths().unwrap(), ["/a", "/b"]);
    }

    #[test]
    fn hostile_bodies_fail_cleanly() {
        for (signature, bytes) in [
            ("s", vec![0xff, 0xff, 0xff, 0xff]),
            ("ay", vec![9, 0, 0, 0, 1]),
            ("a(ss)", vec![8, 0, 0, 0]),
            ("v", vec![1, b'v', 0]),
            ("v", [1, b'v', 0].repeat(100)),
            ("(s", vec![0, 0, 0, 0, 0]),
            ("s", vec![1, 0, 0, 0, 0xc3, 0]),
            ("z", vec![0]),
        ] {
            let message = reply(signature.to_owned(), false, bytes);
            assert!(message.values().is_err(), "{signature}");
        }
    }

    #[test]
    fn arrays_of_empty_structs_are_refused_promptly() {
        // A length of 8 with 8 bytes after the padding: the decoder used to read empty structs from it
        // forever, each taking no bytes.
        let eight = [8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8].to_vec();
        for signature in ["a()", "a{}", "a(())", "aa()", "a(y())", "()", "{}", "(y)()"] {
            let error = decode_within(signature, false, eight.clone()).unwrap_err();
            assert!(
                error.to_string().contains("empty struct"),
                "{signature}: {error}"
            );
        }
        // The same inside a variant, whose signature comes from the body.
        let mut body = vec![3, b'a', b'(', b')', 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&[0; 8]);
        let error = decode_within("v", false, body).unwrap_err();
        assert!(error.to_string().contains("empty struct"), "{error}");
        // An empty array of them is refused as well: the signature is invalid, whatever the body.
        assert!(decode_within("a()", false, vec![0; 8]).is_err());
    }

    #[test]
    fn array_elements_that_take_no_bytes_end_the_array() {
        // Past the signature check (which `Message::values` does first), the array loop stops by itself.
        let data = [8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let result = within("`a()` read directly".to_owned(), move || {
            let mut reader = Reader {
                data: &data,
                pos: 0,
                big_endian: false,
            };
            reader.value(b"a()", &mut 0, Depth::default()).map(|_| ())
        });
        let error = result.unwrap_err();
        assert!(error.to_string().contains("no size"), "{error}");
    }

    #[test]
    fn signatures_longer_than_a_signature_can_be_are_refused() {
        let long = "y".repeat(255);
        assert_eq!(
            decode_within(&long, false, vec![7; 255]).unwrap().len(),
            255
        );
        for signature in [
            format!("{long}y"),
            // Sent as a string in the header, this would otherwise recurse once per bracket.
            format!("{}y{}", "(".repeat(100_000), ")".repeat(100_000)),
        ] {
            let error = decode_within(&signature, false, vec![7; 256]).unwrap_err();
            assert!(error.to_string().contains("signature too long"), "{error}");
        }
    }

    #[test]
    fn nesting_stops_where_libdbus_stops() {
        // 64 containers deep decodes (libdbus accepts as much), 65 is refused: variants around arrays
        // around structs, so that every kind counts.
        fn nested(body: &mut Body, variants: usize, arrays: usize, structs: usize) {
            match (variants, arrays, structs) {
                (0, 0, 0) => body.buf.push(7),
                (0, 0, _) => {
                    body.structure(|s| nested(s, 0, 0, structs - 1));
                }
                (0, _, _) => {
                    let element_align = if arrays > 1 { 4 } else { 8 };
                    body.array(element_align, |a| nested(a, 0, arrays - 1, structs));
                }
                _ => {
                    let signature = if variants > 1 {
                        "v".to_owned()
                    } else {
                        format!(
                            "{}{}y{}",
                            "a".repeat(arrays),
                            "(".repeat(structs),
                            ")".repeat(structs)
                        )
                    };
                    body.variant(&signature, |v| nested(v, variants - 1, arrays, structs));
                }
            }
        }
        for (structs, decodes) in [(31, true), (32, false)] {
            let mut body = Body::new("v");
            nested(&mut body, 2, 31, structs);
            let values = decode_within("v", false, body.buf);
            assert_eq!(values.is_ok(), decodes, "{structs}: {values:?}");
            if let Ok(values) = values {
                assert_eq!(count(&values), 2 + 31 + structs + 1);
            }
        }
        let too_deep = format!("{}y{}", "(".repeat(65), ")".repeat(65));
        let error = decode_within(&too_deep, false, vec![7]).unwrap_err();
        assert!(error.to_string().contains("nested too deeply"), "{error}");
        // Only values that are there nest: an empty array at the limit still decodes.
        let deepest_empty = format!("{}y", "a".repeat(65));
        assert_eq!(
            decode_within(&deepest_empty, false, vec![0; 4]).unwrap(),
            [Value::Array(vec![])]
        );
    }

    #[test]
    fn addresses_unescape_and_fail_in_one_line() {
        assert_eq!(crate::percent::decode("/tmp/a%2cb%zz"), b"/tmp/a,b%zz");
        let error = connect_address("tcp:host=localhost,port=1").unwrap_err();
        assert!(error.to_string().contains("unsupported D-Bus transport"));
        let error = connect_address("unix:path=/nonexistent/bus,guid=1").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("failed to connect to `unix:path=/nonexistent/bus")
        );
    }

    /// Signatures as a bus may send them: complete types built from every code, including the ones the
    /// specification forbids (empty structs and dict entries, nesting past its limits, dict entries
    /// outside arrays or without two fields) and variants, whose content brings signatures of its own.
    fn signatures() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[ybnqiuxtdsoghv]",
            Just("()".to_owned()),
            Just("{}".to_owned()),
        ];
        let complete = leaf.prop_recursive(6, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|element| format!("a{element}")),
                (vec(inner.clone(), 0..4), any::<bool>()).prop_map(|(fields, entry)| {
                    let fields = fields.concat();
                    if entry {
                        format!("{{{fields}}}")
                    } else {
                        format!("({fields})")
                    }
                }),
                (inner.clone(), inner).prop_map(|(key, value)| format!("a{{{key}{value}}}")),
            ]
        });
        prop_oneof![
            vec(complete.clone(), 0..4).prop_map(|types| types.concat()),
            (0..80usize, complete.clone()).prop_map(|(n, t)| format!("{}{t}", "a".repeat(n))),
            (0..80usize, complete).prop_map(|(n, t)| format!(
                "{}{t}{}",
                "(".repeat(n),
                ")".repeat(n)
            )),
        ]
    }

    /// Bodies that get past the first length check: runs of small words (array and string lengths in
    /// either byte order), variant signatures from [`signatures`], zero padding and stray bytes.
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let chunk = prop_oneof![
            any::<u8>().prop_map(|byte| vec![byte]),
            (0u32..40, any::<bool>()).prop_map(|(n, big_endian)| if big_endian {
                n.to_be_bytes().to_vec()
            } else {
                n.to_le_bytes().to_vec()
            }),
            signatures().prop_map(|signature| {
                let mut bytes = vec![u8::try_from(signature.len()).unwrap_or(u8::MAX)];
                bytes.extend_from_slice(signature.as_bytes());
                bytes.push(0);
                bytes
            }),
            Just(vec![0; 4]),
        ];
        prop_oneof![
            vec(any::<u8>(), 0..256),
            vec(chunk, 0..48).prop_map(|chunks| chunks.concat()),
        ]
    }

    /// A method return with the given body signature field and body, as a bus would send it.
    fn message_bytes(signature: &str, body: &[u8]) -> Vec<u8> {
        let mut fields = Body::new("");
        fields.buf.extend_from_slice(&[0; 12]);
        fields.array(8, |f| {
            f.structure(|entry| {
                entry.buf.push(5);
                entry.variant("u", |v| {
                    v.u32(1);
                });
            });
            f.structure(|entry| {
                entry.buf.push(8);
                entry.variant("g", |v| {
                    v.signature(signature);
                });
            });
        });
        fields.align(8);
        let body_len = u32::try_from(body.len()).unwrap();
        fields.buf[..4].copy_from_slice(&[b'l', METHOD_RETURN, 0, 1]);
        fields.buf[4..8].copy_from_slice(&body_len.to_le_bytes());
        fields.buf[8..12].copy_from_slice(&1u32.to_le_bytes());
        fields.buf.extend_from_slice(body);
        fields.buf
    }

    proptest::proptest! {
        // Whatever a bus (or something posing as one) sends must end in a value or an error, never a panic.
        #[test]
        fn fuzz_dbus_any_body_under_any_signature(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            signature in "[ybnqiuxtdsogva(){}]{0,12}",
            big_endian in proptest::prelude::any::<bool>(),
        ) {
            let _ = decode_within(&signature, big_endian, body);
        }

        // The same over signatures and bodies shaped to reach the containers, in bounded time: every
        // value takes at least one byte of the body except a struct, which holds at least one field
        // and nests at most 64 deep, so the values decoded are at most 65 per byte.
        #[test]
        fn fuzz_dbus_shaped_body_under_any_complete_signature(
            body in bodies(),
            signature in signatures(),
            big_endian in any::<bool>(),
        ) {
            let length = body.len();
            if let Ok(values) = decode_within(&signature, big_endian, body) {
                prop_assert!(count(&values) <= 65 * length, "{} values from {length} bytes", count(&values));
            }
        }

        // The path from the socket: header fields, the signature field, then the body under it.
        #[test]
        fn fuzz_dbus_message_from_the_bus(body in bodies(), signature in signatures()) {
            let bytes = message_bytes(&signature, &body);
            let what = format!("`{signature}`, {body:?}");
            let read = within(what, move || {
                let (ours, theirs) = UnixStream::pair().unwrap();
                std::io::Write::write_all(&mut &theirs, &bytes).unwrap();
                drop(theirs);
                let mut bus = Bus {
                    reader: BufReader::new(ours),
                    out: Vec::new(),
                    authenticating: false,
                    serial: 0,
                    pending: VecDeque::new(),
                };
                bus.read().map(|message| (message.signature.clone(), message.values().map(|v| count(&v))))
            });
            // Any signature up to the length a `g` can carry comes through the header as sent.
            if signature.len() < 256 {
                let (read_signature, values) = read.unwrap();
                prop_assert_eq!(&read_signature, &signature);
                if let Ok(values) = values {
                    prop_assert!(values <= 65 * body.len());
                }
            }
        }

        #[test]
        fn fuzz_dbus_any_byte_stream(
            stream in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            authenticated in proptest::prelude::any::<bool>(),
        ) {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let mut line = if authenticated { b"OK 0123\r\n".to_vec() } else { Vec::new() };
            line.extend_from_slice(&stream);
            std::io::Write::write_all(&mut &theirs, &line).unwrap();
            drop(theirs);
            let mut bus = Bus {
                reader: BufReader::new(ours),
                out: Vec::new(),
                authenticating: true,
                serial: 0,
                pending: VecDeque::new(),
            };
            // A few reads at most: each consumes bytes or fails at the end of the stream.
            for _ in 0..8 {
                match bus.read() {
                    Ok(message) => {
                        let _ = message.values();
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
