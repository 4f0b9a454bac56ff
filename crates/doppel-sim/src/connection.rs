//! One device's MQTT 3.1.1 connection: a plain TCP socket and rumqttc's packet codec, without
//! rumqttc's event loop.
//!
//! Why not the event loop: it keeps a 10 KiB read buffer, request channels and a task or two
//! per client, about 33 KiB per connected device as measured here (see the crate
//! documentation), so 100,000 devices would need 3.3 GB. This connection holds a socket, an
//! empty buffer while idle and a timestamp: it waits for the socket to become readable *before*
//! it allocates anything to read into, and frees the buffer again as soon as every packet in it
//! has been taken.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// The largest packet a device accepts or sends: the hub's default `mqtt.max_packet_bytes`.
pub const MAX_PACKET_BYTES: usize = 128 * 1024;

/// How much room one read makes in the buffer. Acknowledgements are 4 bytes, deltas and
/// commands a few hundred, so one read usually takes everything that is waiting.
const READ_CHUNK: usize = 1024;

/// Why a connection could not be made or went away.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed: refused, reset, out of ports or descriptors.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The hub closed the connection.
    #[error("the hub closed the connection")]
    Closed,
    /// The hub sent bytes that are not MQTT 3.1.1.
    #[error("malformed packet from the hub: {0}")]
    Codec(#[from] CodecError),
    /// The hub answered CONNECT with a refusal.
    #[error("the hub refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// The hub answered CONNECT with something other than CONNACK.
    #[error("the hub answered CONNECT with {0}")]
    NoConnAck(&'static str),
    /// No CONNACK came in time.
    #[error("no CONNACK within the connect timeout")]
    Timeout,
}

impl ConnectionError {
    /// The kind of failure in a few words, the same for every device it happens to: what the
    /// report counts failures by. For a refusal, the CONNACK code's meaning.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionError::Io(_) => "socket error",
            ConnectionError::Closed => "closed by the hub",
            ConnectionError::Codec(_) => "malformed packet",
            ConnectionError::Refused(code) => match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorised",
                ConnectReturnCode::ServiceUnavailable => "server unavailable",
                ConnectReturnCode::BadClientId => "client id refused",
                ConnectReturnCode::RefusedProtocolVersion => "protocol version refused",
                // Never a refusal; listed so that every code is named.
                ConnectReturnCode::Success => "refused with success",
            },
            ConnectionError::NoConnAck(_) => "no CONNACK",
            ConnectionError::Timeout => "timed out",
        }
    }
}

/// An open MQTT connection to the hub.
#[derive(Debug)]
pub struct Connection {
    /// The socket; reads go through [`Connection::receive`], writes through
    /// [`Connection::send`].
    stream: TcpStream,
    /// Bytes received but not yet framed into a packet. Empty, without an allocation, while
    /// the device is idle, which is most of the time.
    buffer: BytesMut,
    /// When the last packet went out, so that the device knows when the keep-alive needs a
    /// PINGREQ.
    last_sent: Instant,
}

impl Connection {
    /// Opens a TCP connection to `hub`, from `source` when given (another loopback address,
    /// when one has run out of ports; see [`crate::limits::source_address`]), then sends `connect` and waits for the
    /// CONNACK. Bound the whole call with a timeout: a hub that accepts and stays silent would
    /// hold it forever.
    ///
    /// # Errors
    ///
    /// The socket's error, or the hub's refusal.
    pub async fn open(
        hub: SocketAddr,
        source: Option<IpAddr>,
        connect: Connect,
    ) -> Result<Connection, ConnectionError> {
        let socket = match hub {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(source) = source {
            // So that a port whose last connection is still in TIME_WAIT (a previous run's, or
            // this device's before a partition) can be bound again.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(hub).await?;
        // Reports and acknowledgements are small and latency is what we measure: no Nagle.
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            stream,
            buffer: BytesMut::new(),
            last_sent: Instant::now(),
        };
        connection.send(Packet::Connect(connect)).await?;
        match connection.receive().await? {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }) => Ok(connection),
            Packet::ConnAck(ConnAck { code, .. }) => Err(ConnectionError::Refused(code)),
            other => Err(ConnectionError::NoConnAck(packet_name(&other))),
        }
    }

    /// Sends one packet.
    ///
    /// The packet is encoded before the returned future is first polled, so the future holds
    /// only the bytes, not the packet: it is part of every device's resident state while a
    /// write waits on the socket.
    ///
    /// # Errors
    ///
    /// The socket's error; a packet too large to encode is a bug of the caller, reported as the
    /// codec's error.
    pub fn send(
        &mut self,
        packet: Packet,
    ) -> impl Future<Output = Result<(), ConnectionError>> + '_ {
        let mut bytes = BytesMut::with_capacity(packet.size());
        let encoded = packet.write(&mut bytes, MAX_PACKET_BYTES);
        async move {
            encoded?;
            self.stream.write_all(&bytes).await?;
            self.last_sent = Instant::now();
            Ok(())
        }
    }

    /// When the last packet went out.
    pub fn last_sent(&self) -> Instant {
        self.last_sent
    }

    /// The next packet from the hub.
    ///
    /// Cancel safe: it awaits only the socket's readiness, and whatever it has read stays in the
    /// buffer for the next call, so a device can race it against its timers.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Closed`] when the hub closed the connection, or the socket's or the
    /// codec's error.
    pub async fn receive(&mut self) -> Result<Packet, ConnectionError> {
        loop {
            if !self.buffer.is_empty() {
                match Packet::read(&mut self.buffer, MAX_PACKET_BYTES) {
                    Ok(packet) => {
                        self.release_if_empty();
                        return Ok(packet);
                    }
                    Err(CodecError::InsufficientBytes(_)) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            self.stream.readable().await?;
            self.buffer.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.buffer) {
                Ok(0) => return Err(ConnectionError::Closed),
                Ok(_) => {}
                // Readiness can be spurious; give the room back before waiting again.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.release_if_empty(),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Frees the read buffer when it holds nothing, so that an idle device holds no buffer.
    fn release_if_empty(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
        }
    }
}

/// The name of a packet's type, for messages.
pub fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}
