//! A TCP relay on loopback that adds a fixed one-way delay in each
//! direction: every chunk it reads is written on `delay` later, in order,
//! without limiting throughput. Put on an SSH connection's path (ssh to the
//! relay, the relay to sshd) it stands in for a distant remote server,
//! where `tc netem` is not available.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A running relay; stops accepting when dropped.
pub struct DelayRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayRelay {
    /// Relays connections to `127.0.0.1:<port>` on to `target`, each byte
    /// `delay` later than it arrived, both ways.
    pub async fn start(target: SocketAddr, delay: Duration) -> DelayRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((near, _)) = listener.accept().await {
                let Ok(far) = TcpStream::connect(target).await else {
                    continue;
                };
                // The relay itself must not hold back small writes.
                let _ = near.set_nodelay(true);
                let _ = far.set_nodelay(true);
                let (near_read, near_write) = near.into_split();
                let (far_read, far_write) = far.into_split();
                tokio::spawn(delayed_copy(near_read, far_write, delay));
                tokio::spawn(delayed_copy(far_read, near_write, delay));
            }
        });
        DelayRelay { addr, task }
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read;
/// shuts `to` down once `from` ends.
async fn delayed_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (queue, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let at = tokio::time::Instant::now() + delay;
                if queue.send((at, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(queue);
    let _ = writer.await;
}
