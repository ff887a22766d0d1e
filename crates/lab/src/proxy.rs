//! The lab's delaying TCP proxy: one listener per host, on the address and port the client
//! files name, forwarding to the host's sshd on its own port with the lab's [`Latency`].
//!
//! # Model
//!
//! - Each direction of a connection is a queue of chunks (what one `read` returned), each
//!   with a delivery time from its [`Schedule`]: arrival + rtt/2 (+ jitter, + a
//!   retransmission timeout when "lost"), never before the chunk ahead of it.
//! - The client's own `connect` completes at once (the kernel accepts for the proxy), so the
//!   handshake's round trip is modelled by connecting upstream half a round trip late (the
//!   SYN's way) and delivering the server's first bytes half a round trip later. A protocol
//!   whose server speaks first (SSH) thus sees its first bytes one round trip after
//!   `connect`, as on a real network. A refused upstream connect (a stopped host) closes the
//!   client's connection a full round trip after it was made (the RST's way back).
//! - The end of a stream is delivered like a chunk: once the data queued ahead of it is
//!   written, the other side's write half is shut down. A read error (a reset) ends a stream
//!   the same way, so what was read before it still arrives. A failed write (that side is
//!   gone) ends its direction at once; the connection is closed when both have ended.
//! - Each direction buffers at most [`BUDGET`] bytes (plus one read); past that the proxy
//!   stops reading that side, so a fast sender is held back by TCP as on a slow path.
//! - Every connection is one task, owned by its listener's task; it ends when both
//!   directions have ended.

mod process;
mod schedule;

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::error::io;
use crate::{Lab, LabError, Latency};
pub(crate) use process::{is_our_proxy, pid_file};
use schedule::Schedule;

/// The most one read takes from a socket.
const CHUNK: usize = 16 * 1024;

/// The most bytes one direction of a connection holds back before it stops reading.
pub(crate) const BUDGET: usize = 1024 * 1024;

/// How long the proxy waits for a host's sshd to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The latency proxy of a lab, bound and ready to [`run`](LatencyProxy::run).
///
/// `fleet-lab proxy --foreground` runs it; [`Lab::up`] starts that process in the
/// background when the lab has a [`Latency`].
#[derive(Debug)]
pub struct LatencyProxy {
    routes: Vec<Route>,
    latency: Latency,
    stats: Arc<Stats>,
}

impl LatencyProxy {
    /// Binds one listener per host of `lab` (its address and port), writes the proxy's pid
    /// file, and reports the outcome on `announce`: the line the process that started this
    /// one waits for.
    ///
    /// # Errors
    ///
    /// [`LabError::NoLatency`] when the lab has no latency, [`LabError::AddressInUse`] when a
    /// host's address and port are taken, or an I/O error.
    pub fn bind(lab: &Lab, announce: &mut impl Write) -> Result<LatencyProxy, LabError> {
        let bound = Self::bind_all(lab);
        process::announce(announce, bound.as_ref().map(|_| ()));
        bound
    }

    fn bind_all(lab: &Lab) -> Result<LatencyProxy, LabError> {
        let latency = lab.latency().ok_or(LabError::NoLatency)?;
        // One descriptor per host plus two per connection.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let mut routes = Vec::with_capacity(lab.hosts().len());
        for h in lab.hosts() {
            let listen = SocketAddrV4::new(h.address, h.port);
            let listener = std::net::TcpListener::bind(listen).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    LabError::AddressInUse {
                        address: h.address,
                        port: h.port,
                    }
                } else {
                    io("listen on", PathBuf::from(listen.to_string()))(e)
                }
            })?;
            listener
                .set_nonblocking(true)
                .map_err(io("listen on", PathBuf::from(listen.to_string())))?;
            routes.push(Route {
                listener,
                upstream: SocketAddrV4::new(h.address, h.sshd_port).into(),
            });
        }
        let pid_file = pid_file(lab.dir());
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .map_err(io("write", &pid_file))?;
        Ok(LatencyProxy {
            routes,
            latency,
            stats: Arc::default(),
        })
    }

    /// Forwards connections until the process is killed (`fleet-lab down` sends SIGTERM).
    ///
    /// # Errors
    ///
    /// When a listener cannot be registered with the runtime (which must be a tokio runtime
    /// with I/O and timers enabled).
    pub async fn run(self) -> Result<(), LabError> {
        serve(self.routes, self.latency, self.stats)
            .await
            .map_err(io("serve", "the latency proxy's listeners"))
    }
}

/// One host's listener and the sshd it forwards to.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) listener: std::net::TcpListener,
    pub(crate) upstream: SocketAddr,
}

/// What the proxy has done, for tests.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections whose task is still running.
    pub(crate) open: AtomicUsize,
    /// Connections accepted in all.
    pub(crate) accepted: AtomicU64,
    /// The most bytes one direction of one connection ever held back.
    pub(crate) peak_queued: AtomicUsize,
}

/// Serves every route with `latency` until a listener fails.
pub(crate) async fn serve(
    routes: Vec<Route>,
    latency: Latency,
    stats: Arc<Stats>,
) -> std::io::Result<()> {
    let seed = crate::addr::random_u64();
    let mut listeners = JoinSet::new();
    for (i, route) in routes.into_iter().enumerate() {
        route.listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(route.listener)?;
        let seed = mix(seed, i as u64);
        listeners.spawn(accept_loop(
            listener,
            route.upstream,
            latency,
            seed,
            stats.clone(),
        ));
    }
    while let Some(done) = listeners.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    Ok(())
}

/// Accepts connections on one listener, each served by a task of this loop's own set.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    latency: Latency,
    seed: u64,
    stats: Arc<Stats>,
) {
    let mut connections = JoinSet::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    n += 1;
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(connection(
                        client,
                        upstream,
                        latency,
                        mix(seed, n),
                        stats.clone(),
                    ));
                }
                // Out of descriptors, or a connection reset before it was accepted: the
                // listener itself is fine, so try again shortly rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Counts a connection as open for as long as its task runs.
struct Open(Arc<Stats>);

impl Open {
    fn new(stats: Arc<Stats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open(stats)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one client connection: connects upstream half a round trip later, then pumps both
/// directions until both have ended or either side fails.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    latency: Latency,
    seed: u64,
    stats: Arc<Stats>,
) {
    let _open = Open::new(stats.clone());
    // Chunks are written as soon as they are due; Nagle would hold small ones back.
    let _ = client.set_nodelay(true);
    let mut up = Direction::new(&latency, seed, stats.clone());
    let mut down = Direction::new(&latency, mix(seed, u64::MAX), stats);
    // The SYN's trip: the upstream connect, like any chunk, waits its turn.
    let connect_at = up.schedule.deliver_at(Instant::now());
    let (mut client_read, client_write) = client.into_split();
    let mut buf = vec![0u8; CHUNK];
    let connect = async {
        sleep_until(connect_at).await;
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    };
    tokio::pin!(connect);
    // What the client sends meanwhile is queued (within the budget), as it would be in
    // flight on a real network.
    let server = loop {
        tokio::select! {
            connected = &mut connect => break connected,
            read = client_read.read(&mut buf), if up.has_room() => match read {
                Ok(n) => up.arrived(&buf[..n]),
                Err(_) => return,
            },
        }
    };
    let Ok(Ok(server)) = server else {
        // Refused (a stopped host) or no answer: the refusal travels back to the client,
        // whose connection is then closed by dropping it.
        sleep_until(down.schedule.deliver_at(Instant::now())).await;
        return;
    };
    let _ = server.set_nodelay(true);
    let (server_read, server_write) = server.into_split();
    // Dropping the halves when both directions are over closes both sockets.
    tokio::join!(
        up.pump(client_read, server_write, buf),
        down.pump(server_read, client_write, vec![0u8; CHUNK]),
    );
}

/// One chunk on its way, possibly partly written.
#[derive(Debug)]
struct Chunk {
    at: Instant,
    data: Vec<u8>,
    written: usize,
}

/// One direction of a connection: the chunks read and not yet written, and when the end of
/// the stream is due.
#[derive(Debug)]
struct Direction {
    schedule: Schedule,
    queue: VecDeque<Chunk>,
    queued: usize,
    eof_at: Option<Instant>,
    stats: Arc<Stats>,
}

impl Direction {
    fn new(latency: &Latency, seed: u64, stats: Arc<Stats>) -> Self {
        Self {
            schedule: Schedule::new(latency, seed),
            queue: VecDeque::new(),
            queued: 0,
            eof_at: None,
            stats,
        }
    }

    /// True while this side should be read: not at its end, and within the budget.
    fn has_room(&self) -> bool {
        self.eof_at.is_none() && self.queued < BUDGET
    }

    /// Queues what one read returned (nothing: the end of the stream), timed from now.
    fn arrived(&mut self, data: &[u8]) {
        let at = self.schedule.deliver_at(Instant::now());
        if data.is_empty() {
            self.eof_at = Some(at);
            return;
        }
        self.queued += data.len();
        self.stats
            .peak_queued
            .fetch_max(self.queued, Ordering::Relaxed);
        self.queue.push_back(Chunk {
            at,
            data: data.to_vec(),
            written: 0,
        });
    }

    /// Records that `n` bytes of the first chunk were written.
    fn delivered(&mut self, n: usize) {
        let Some(head) = self.queue.front_mut() else {
            return;
        };
        head.written += n;
        if head.written == head.data.len() {
            self.queued -= head.data.len();
            self.queue.pop_front();
        }
    }

    /// Moves data from `from` to `to`, each chunk at its time, until the end of the stream
    /// has been delivered (by shutting `to`'s write half) or `to` fails.
    async fn pump(
        mut self,
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
        mut buf: Vec<u8>,
    ) {
        loop {
            if self.queue.is_empty()
                && let Some(at) = self.eof_at
            {
                sleep_until(at).await;
                let _ = to.shutdown().await;
                return;
            }
            // Not both disabled: an empty queue means nothing is held back, so either the
            // end is due (above) or there is room to read.
            let read = self.has_room();
            let head = self.queue.front();
            tokio::select! {
                // A reset ends the stream like a close: what was read before still arrives.
                n = from.read(&mut buf), if read => self.arrived(&buf[..n.unwrap_or(0)]),
                n = write_due(&mut to, head), if head.is_some() => match n {
                    Ok(n) if n > 0 => self.delivered(n),
                    // That side is gone: nothing more can reach it.
                    _ => return,
                },
            }
        }
    }
}

/// Waits until `head` is due, then writes as much of it as the socket takes.
///
/// # Cancel safety
///
/// Cancel safe: either the write happened and its count is returned, or nothing was written.
async fn write_due(
    to: &mut (impl AsyncWrite + Unpin),
    head: Option<&Chunk>,
) -> std::io::Result<usize> {
    let Some(chunk) = head else {
        return std::future::pending().await;
    };
    sleep_until(chunk.at).await;
    to.write(&chunk.data[chunk.written..]).await
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// A seed for the `i`-th of several generators from one `seed`.
fn mix(seed: u64, i: u64) -> u64 {
    seed ^ i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::schedule::tests::{latency, ms};
    use super::*;

    /// Starts a proxy on 127.0.0.1 in front of `upstream`; returns its address.
    fn proxy(upstream: SocketAddr, latency: Latency) -> (SocketAddr, Arc<Stats>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let routes = vec![Route { listener, upstream }];
        tokio::spawn(serve(routes, latency, stats.clone()));
        (addr, stats)
    }

    /// A server on 127.0.0.1 that runs `serve` on every connection.
    async fn server<F, Fut>(serve: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        });
        addr
    }

    /// Echoes everything back, then closes its side after the client's end of stream.
    async fn echo(s: TcpStream) {
        let (mut r, mut w) = s.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    }

    /// Waits (up to 5 s) until every connection task of the proxy has ended.
    async fn all_closed(stats: &Stats) {
        let t = Instant::now();
        while stats.open.load(Ordering::Relaxed) != 0 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "connection tasks left running"
            );
            tokio::time::sleep(ms(10)).await;
        }
    }

    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                // xorshift64: cheap, and no two neighbouring chunks look alike.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_arrive_in_order_through_jitter_and_loss() {
        let (addr, stats) = proxy(server(echo).await, latency(20, 10, 0.01));
        let sent = pattern(4 << 20, 0x5EED);
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let data = sent.clone();
        let writer = tokio::spawn(async move {
            // Uneven writes, so chunk boundaries fall anywhere.
            for piece in data.chunks(7919) {
                w.write_all(piece).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::with_capacity(sent.len());
        tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
            .await
            .expect("echo within 60 s")
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), sent.len());
        let first_diff = got.iter().zip(&sent).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "bytes differ from offset {first_diff:?}");
        all_closed(&stats).await;
        assert!(stats.peak_queued.load(Ordering::Relaxed) <= BUDGET + CHUNK);
    }

    #[tokio::test]
    async fn a_round_trip_takes_the_asked_rtt() {
        let (addr, stats) = proxy(server(echo).await, latency(100, 0, 0.0));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut rtts = Vec::new();
        for i in 0..5u8 {
            let t = Instant::now();
            s.write_all(&[i]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            rtts.push(t.elapsed());
            assert_eq!(b[0], i);
        }
        let _ = writeln!(std::io::stderr(), "round trips through rtt=100ms: {rtts:?}");
        for rtt in &rtts {
            // A correctness check of the delay, with room for a loaded CI machine.
            assert!(*rtt >= ms(100) && *rtt < ms(400), "{rtts:?}");
        }
        drop(s);
        all_closed(&stats).await;
    }

    #[tokio::test]
    async fn a_server_that_speaks_first_is_heard_one_rtt_after_connect() {
        let banner = server(|mut s: TcpStream| async move {
            let _ = s.write_all(b"SSH-2.0-test\r\n").await;
            let _ = s.shutdown().await;
        })
        .await;
        let (addr, stats) = proxy(banner, latency(100, 0, 0.0));
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let took = t.elapsed();
        assert_eq!(got, b"SSH-2.0-test\r\n");
        assert!(took >= ms(100) && took < ms(400), "{took:?}");
        // The client's half is still open (and forwarded) until it closes it.
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
        drop(s);
        all_closed(&stats).await;
    }

    #[tokio::test]
    async fn a_refused_upstream_closes_the_client_a_round_trip_later() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nobody = closed.local_addr().unwrap();
        drop(closed);
        let (addr, stats) = proxy(nobody, latency(100, 0, 0.0));
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        // A close or a reset, but never data.
        let _ = s.read_to_end(&mut got).await;
        let took = t.elapsed();
        assert!(got.is_empty());
        assert!(took >= ms(100) && took < ms(400), "{took:?}");
        all_closed(&stats).await;
    }

    #[tokio::test]
    async fn half_close_reaches_the_server_and_its_reply_comes_back() {
        // Reads to the end first, then answers with the count and closes.
        let counter = server(|s: TcpStream| async move {
            let (mut r, mut w) = s.into_split();
            let mut all = Vec::new();
            let _ = r.read_to_end(&mut all).await;
            let _ = w.write_all(format!("got {}", all.len()).as_bytes()).await;
            let _ = w.shutdown().await;
        })
        .await;
        let (addr, stats) = proxy(counter, latency(20, 5, 0.0));
        for _ in 0..10 {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut r, mut w) = s.into_split();
            w.write_all(b"abcde").await.unwrap();
            w.shutdown().await.unwrap();
            let mut reply = String::new();
            r.read_to_string(&mut reply).await.unwrap();
            assert_eq!(reply, "got 5");
        }
        all_closed(&stats).await;
        assert_eq!(stats.accepted.load(Ordering::Relaxed), 10);
    }

    #[tokio::test]
    async fn a_fast_sender_is_held_back_within_the_budget() {
        // Accepts and never reads.
        let (hold, mut held) = tokio::sync::mpsc::unbounded_channel();
        let sink = server(move |s: TcpStream| {
            let hold = hold.clone();
            async move {
                let _ = hold.send(s);
            }
        })
        .await;
        let (addr, stats) = proxy(sink, latency(0, 0, 0.0));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let block = vec![7u8; 1 << 20];
        let mut sent = 0usize;
        // Stops once a write stalls: nothing reads at the far end.
        while sent < 256 << 20 {
            match tokio::time::timeout(ms(500), s.write_all(&block)).await {
                Ok(Ok(())) => sent += block.len(),
                _ => break,
            }
        }
        assert!(sent < 256 << 20, "a sender was never held back");
        let peak = stats.peak_queued.load(Ordering::Relaxed);
        assert!(peak <= BUDGET + CHUNK, "{peak} bytes held by one direction");
        assert!(peak >= BUDGET, "the budget was never filled: {peak}");
        drop(s);
        drop(held.recv().await);
        all_closed(&stats).await;
    }
}
