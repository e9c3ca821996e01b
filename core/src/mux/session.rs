//! The sans-IO link session: one end of a link, driven by bytes and time (protocol.md).
//!
//! Modelled on quinn-proto's `Connection`: no sockets, no clock, no tasks. Input enters through
//! [`Session::handle_input`] and [`Session::handle_timeout`]; output leaves through
//! [`Session::poll_transmit`], [`Session::poll_event`] and [`Session::poll_timeout`]. That keeps
//! every rule testable with a virtual clock and fuzzable, and the socket driver small.
//!
//! Design choices:
//! - A peer violation is never a panic: it queues GOAWAY(code) and closes the session
//!   (protocol.md §9). It is logged once, at debug level, through `peer_violation!`.
//! - Everything a peer can make us hold is bounded: received data by the stream windows we
//!   advertise, control frames we owe it by `max_pending_control`, stream state by
//!   `max_concurrent_streams` (or none at all with `peer_opens_streams` off), frames by the
//!   size limits. protocol.md §8.1 adds it up.
//! - Link credit comes back as soon as DATA is placed in its stream's buffer (protocol.md
//!   §5.3): the stream window alone bounds what one stream holds, so streams whose reader
//!   stopped never use up the link window. The link window bounds data in transit, and how
//!   far stream windows may grow in total (§5.5).
//! - Output is scheduled control frames first, then WINDOW, then DATA round-robin over the
//!   streams that have both data and credit, one frame per stream per turn. A stream waiting
//!   for credit steps aside: it never holds back control frames, a FIN, or other streams.
//! - Readiness events are edge-triggered and deduplicated by per-stream flags, so the event
//!   queue grows with the input processed, never with time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::config::{Config, MAX_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE, Role};
use super::frame::{
    self, Data, Encoder, Frame, GoAway, HEADER_LEN, Limits, Open, Ping, Reply, Reset, Settings,
    StreamKind, Window,
};
use super::stream::{Stream, StreamState};
use super::{Error, ErrorCode, StreamId, StreamMap};

/// Logs a peer protocol violation: one constant message at debug level, so a hostile peer
/// cannot flood the log (there is at most one per session, as the session then closes).
macro_rules! peer_violation {
    ($code:expr, $reason:expr) => {
        tracing::debug!(code = ?$code, reason = $reason, "mux peer violation")
    };
}

/// Largest credit a window may reach; more is a FLOW_CONTROL_ERROR (protocol.md §5.3).
const MAX_CREDIT: u64 = 1 << 62;

/// Something the application learns from [`Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream. Answer with [`Session::reply`] (or [`Session::reset`]).
    StreamOpened {
        /// The stream.
        id: StreamId,
        /// What it carries.
        kind: StreamKind,
        /// The OPEN metadata.
        meta: Bytes,
    },
    /// The peer replied on a stream we opened.
    StreamReplied {
        /// The stream.
        id: StreamId,
        /// The REPLY metadata.
        meta: Bytes,
    },
    /// Data arrived on a stream whose buffer the application had emptied; read until
    /// [`Error::Blocked`] or end of stream.
    StreamReadable(StreamId),
    /// Send buffer space freed on a stream where a write was short.
    StreamWritable(StreamId),
    /// The peer finished sending (FIN). Remaining data can still be read, then
    /// [`Session::read`] returns `Ok(None)`.
    StreamFinished(StreamId),
    /// The peer reset the stream; it is gone.
    StreamReset {
        /// The stream.
        id: StreamId,
        /// The peer's code.
        code: ErrorCode,
    },
    /// A stream we opened was refused before any processing (over the peer's limit, or above
    /// its GOAWAY last ID). It is gone; retrying it on another link is safe.
    StreamRefused {
        /// The stream.
        id: StreamId,
    },
    /// The peer sent GOAWAY: open no more streams on this link.
    GoAway {
        /// Our streams above this ID were refused (`u64::MAX` in drain phase 1).
        last_id: StreamId,
        /// The peer's code.
        code: ErrorCode,
        /// Phase 1 of a drain: streams are still accepted, the final GOAWAY follows.
        drain: bool,
    },
    /// A PING round trip completed.
    Rtt(Duration),
    /// A drain completed: GOAWAY was exchanged and every stream finished. `Closed` follows.
    Drained,
    /// The session is closed; every stream is gone. Flush [`Session::poll_transmit`] and close
    /// the socket.
    Closed {
        /// The code of the GOAWAY that closed the link (sent or received).
        code: ErrorCode,
        /// Why, with whose fault it was.
        error: Error,
    },
}

/// Counters, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames decoded.
    pub frames_received: u64,
    /// Frames encoded.
    pub frames_sent: u64,
    /// DATA payload bytes received.
    pub data_received: u64,
    /// DATA payload bytes sent.
    pub data_sent: u64,
    /// Streams the peer opened that we accepted.
    pub streams_accepted: u64,
    /// Streams the peer opened that we refused.
    pub streams_refused: u64,
    /// Streams we opened.
    pub streams_opened: u64,
    /// DATA payload bytes discarded (reset or closed streams).
    pub data_discarded: u64,
}

#[derive(Debug)]
enum Ctrl {
    Settings(Settings),
    Ping(Ping),
    Reset(Reset),
    GoAway(GoAway),
    Open(Open),
    Reply(Reply),
}

#[derive(Debug)]
struct CtrlEntry {
    ctrl: Ctrl,
    /// Queued because of a peer frame: counted against `max_pending_control`.
    peer_induced: bool,
}

/// The peer's SETTINGS, or the protocol defaults until they arrive.
#[derive(Debug, Clone, Copy)]
struct PeerSettings {
    stream_window: u32,
    link_window: u32,
    max_frame_size: u32,
    max_metadata_size: u32,
    max_concurrent_streams: u32,
}

impl Default for PeerSettings {
    fn default() -> Self {
        let d = Config::default();
        PeerSettings {
            stream_window: d.stream_window,
            link_window: d.link_window,
            max_frame_size: d.max_frame_size,
            max_metadata_size: d.max_metadata_size,
            max_concurrent_streams: d.max_concurrent_streams,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Not draining.
    None,
    /// Phase 1 sent; waiting for the ACK of this PING, or the deadline.
    AwaitingAck { token: [u8; 8], deadline: Instant },
    /// Final GOAWAY queued with this last ID (protocol.md §7).
    Final { last_id: StreamId },
}

#[derive(Debug, Clone, Copy)]
struct PingOut {
    payload: [u8; 8],
    sent_at: Option<Instant>,
}

/// One end of a link.
///
/// # Driving a session
///
/// The driver owns the socket, a receive `BytesMut`, and a timer. In a loop:
///
/// 1. When bytes arrive, append them to the receive buffer and call
///    [`handle_input`](Self::handle_input); it consumes every whole frame and leaves a partial
///    one in the buffer.
/// 2. When the timer fires, call [`handle_timeout`](Self::handle_timeout).
/// 3. After either, and after any stream operation ([`open`](Self::open),
///    [`write`](Self::write), [`read`](Self::read), ...):
///    - drain [`poll_event`](Self::poll_event) until `None` and act on the events;
///    - call [`poll_transmit`](Self::poll_transmit) and write what it appended as one
///      vectored write (loop on short writes); repeat while it returns non-zero and the socket
///      accepts more (keep one write in flight);
///    - re-arm the timer from [`poll_timeout`](Self::poll_timeout).
/// 4. Once [`is_closed`](Self::is_closed) is true and `poll_transmit` returns 0, close the
///    socket.
///
/// Nothing here reads the clock: `now` is passed in, and the session only compares it.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    limits: Limits,
    peer: PeerSettings,
    peer_settings_seen: bool,
    settings_acked: bool,

    /// Looked up on every frame and stream operation: a fast hasher (randomly seeded), not
    /// SipHash.
    streams: StreamMap<Stream>,
    next_local_id: StreamId,
    /// Highest ID the peer opened (0: none).
    highest_peer_id: StreamId,
    /// Highest ID the peer opened that we accepted (0: none).
    last_accepted_peer_id: StreamId,
    local_open: usize,
    peer_open: usize,
    /// How far the receive windows of all open streams grew beyond the initial window in
    /// total; at most the link window (protocol.md §5.5).
    window_growth: u64,

    link_send_credit: u64,
    link_recv_credit: u64,
    link_pending_credit: u64,
    link_window_due: bool,

    ctrl: VecDeque<CtrlEntry>,
    peer_ctrl: usize,
    window_queue: VecDeque<StreamId>,
    sendable: VecDeque<StreamId>,
    /// Streams with data and stream credit, waiting for link credit; they go back to the
    /// front of `sendable` when a link WINDOW arrives. Like `sendable`, marked `in_sendable`.
    link_blocked: VecDeque<StreamId>,
    events: VecDeque<Event>,
    enc: Encoder,

    last_rx: Instant,
    next_ping_at: Option<Instant>,
    ping_out: Option<PingOut>,
    ping_seq: u64,
    rtt: Option<Duration>,

    drain: Drain,
    /// A drain notice was sent ([`Session::drain_notice`]).
    notice_sent: bool,
    /// Lowest last ID of the peer's GOAWAYs.
    peer_goaway: Option<StreamId>,
    peer_final_goaway: bool,
    closed: Option<Error>,
    empty_data_run: u32,
    stats: Stats,
}

impl Session {
    /// A new session for `role`; queues our SETTINGS, which must be the first frame sent.
    pub fn new(role: Role, mut config: Config, now: Instant) -> Session {
        config.max_frame_size = config
            .max_frame_size
            .clamp(MIN_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
        // protocol.md §2.1: a side that accepts no streams advertises a limit of 0.
        if !config.peer_opens_streams {
            config.max_concurrent_streams = 0;
        }
        let limits = Limits {
            max_frame_size: config.max_frame_size,
            max_metadata_size: config.max_metadata_size,
        };
        let settings = Settings {
            ack: false,
            initial_stream_window: Some(config.stream_window),
            link_window: Some(config.link_window),
            max_frame_size: Some(config.max_frame_size),
            max_metadata_size: Some(config.max_metadata_size),
            max_concurrent_streams: Some(config.max_concurrent_streams),
        };
        let mut ctrl = VecDeque::new();
        ctrl.push_back(CtrlEntry {
            ctrl: Ctrl::Settings(settings),
            peer_induced: false,
        });
        Session {
            role,
            limits,
            peer: PeerSettings::default(),
            peer_settings_seen: false,
            settings_acked: false,
            streams: StreamMap::default(),
            next_local_id: role.first_stream_id(),
            highest_peer_id: 0,
            last_accepted_peer_id: 0,
            local_open: 0,
            peer_open: 0,
            window_growth: 0,
            link_send_credit: 0,
            link_recv_credit: u64::from(config.link_window),
            link_pending_credit: 0,
            link_window_due: false,
            ctrl,
            peer_ctrl: 0,
            window_queue: VecDeque::new(),
            sendable: VecDeque::new(),
            link_blocked: VecDeque::new(),
            events: VecDeque::new(),
            enc: Encoder::new(),
            last_rx: now,
            next_ping_at: config.ping_interval.map(|i| now + i),
            ping_out: None,
            ping_seq: 0,
            rtt: None,
            drain: Drain::None,
            notice_sent: false,
            peer_goaway: None,
            peer_final_goaway: false,
            closed: None,
            empty_data_run: 0,
            stats: Stats::default(),
            config,
        }
    }

    // ---------------------------------------------------------------- input

    /// Decodes and processes every whole frame in `buf`, leaving a partial frame in it.
    ///
    /// A protocol violation queues GOAWAY with its code, closes the session and discards the
    /// rest of `buf`. Input after the session closed is discarded.
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) {
        while self.closed.is_none() {
            match frame::decode(buf, &self.limits) {
                Ok(Some(f)) => {
                    self.last_rx = now;
                    self.stats.frames_received += 1;
                    tracing::trace!(frame = ?FrameSummary(&f), "mux recv");
                    if let Err((code, reason)) = self.handle_frame(f, now) {
                        self.violation(code, reason);
                    }
                }
                Ok(None) => break,
                Err(Error::Protocol { code, reason }) => self.violation(code, reason),
                Err(_) => self.violation(ErrorCode::INTERNAL_ERROR, "decoder failed"),
            }
        }
        if self.closed.is_some() {
            buf.clear();
        }
        self.check_drained();
    }

    fn violation(&mut self, code: ErrorCode, reason: &'static str) {
        peer_violation!(code, reason);
        self.close_with(Error::Protocol { code, reason });
    }

    fn handle_frame(&mut self, f: Frame, now: Instant) -> Result<(), (ErrorCode, &'static str)> {
        // protocol.md §4: SETTINGS is the first frame of each side.
        if !self.peer_settings_seen && !matches!(&f, Frame::Settings(s) if !s.ack) {
            return Err((ErrorCode::PROTOCOL_ERROR, "first frame is not SETTINGS"));
        }
        match f {
            Frame::Settings(s) => self.on_settings(s),
            Frame::Ping(p) => self.on_ping(p, now),
            Frame::GoAway(g) => self.on_goaway(g),
            Frame::Window(w) => self.on_window(w),
            Frame::Open(o) => self.on_open(o),
            Frame::Reply(r) => self.on_reply(r),
            Frame::Data(d) => self.on_data(d),
            Frame::Reset(r) => self.on_reset(r),
            // protocol.md §3: unknown frame types are ignored.
            Frame::Unknown(_) => Ok(()),
        }
    }

    fn push_peer_ctrl(&mut self, ctrl: Ctrl) -> Result<(), (ErrorCode, &'static str)> {
        // protocol.md §8: a peer that makes us owe it too many control frames must calm down.
        if self.peer_ctrl >= self.config.max_pending_control {
            return Err((
                ErrorCode::ENHANCE_YOUR_CALM,
                "too many pending control frames",
            ));
        }
        self.peer_ctrl += 1;
        self.ctrl.push_back(CtrlEntry {
            ctrl,
            peer_induced: true,
        });
        Ok(())
    }

    fn on_settings(&mut self, s: Settings) -> Result<(), (ErrorCode, &'static str)> {
        // protocol.md §4: exactly one SETTINGS and one ACK per side.
        if s.ack {
            if self.settings_acked {
                return Err((ErrorCode::PROTOCOL_ERROR, "duplicate SETTINGS ACK"));
            }
            self.settings_acked = true;
            return Ok(());
        }
        if self.peer_settings_seen {
            return Err((ErrorCode::PROTOCOL_ERROR, "second SETTINGS"));
        }
        let d = PeerSettings::default();
        let p = PeerSettings {
            stream_window: s.initial_stream_window.unwrap_or(d.stream_window),
            link_window: s.link_window.unwrap_or(d.link_window),
            max_frame_size: s.max_frame_size.unwrap_or(d.max_frame_size),
            max_metadata_size: s.max_metadata_size.unwrap_or(d.max_metadata_size),
            max_concurrent_streams: s.max_concurrent_streams.unwrap_or(d.max_concurrent_streams),
        };
        if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&p.max_frame_size) {
            return Err((ErrorCode::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"));
        }
        self.peer = p;
        self.peer_settings_seen = true;
        self.link_send_credit = u64::from(p.link_window);
        // Streams opened before the SETTINGS arrived have sent nothing yet (protocol.md §4).
        for (id, s) in self.streams.iter_mut() {
            s.send_credit = u64::from(p.stream_window);
            if s.wants_send() && !s.in_sendable {
                s.in_sendable = true;
                self.sendable.push_back(*id);
            }
        }
        self.push_peer_ctrl(Ctrl::Settings(Settings {
            ack: true,
            ..Settings::default()
        }))
    }

    fn on_ping(&mut self, p: Ping, now: Instant) -> Result<(), (ErrorCode, &'static str)> {
        if !p.ack {
            return self.push_peer_ctrl(Ctrl::Ping(Ping {
                ack: true,
                payload: p.payload,
            }));
        }
        if let Drain::AwaitingAck { token, .. } = self.drain
            && token == p.payload
        {
            self.send_final_goaway();
        }
        if let Some(out) = self.ping_out
            && out.payload == p.payload
        {
            self.ping_out = None;
            if let Some(sent) = out.sent_at {
                let rtt = now.saturating_duration_since(sent);
                self.rtt = Some(rtt);
                self.events.push_back(Event::Rtt(rtt));
            }
            self.next_ping_at = self.config.ping_interval.map(|i| now + i);
        }
        // An unmatched ACK (late, or for a ping we forgot) is harmless: ignore it.
        Ok(())
    }

    fn on_goaway(&mut self, g: GoAway) -> Result<(), (ErrorCode, &'static str)> {
        if g.code != ErrorCode::NO_ERROR {
            self.close_with(Error::PeerClosed { code: g.code });
            return Ok(());
        }
        // protocol.md §7: the last ID never increases.
        if let Some(prev) = self.peer_goaway
            && g.last_id > prev
        {
            return Err((ErrorCode::PROTOCOL_ERROR, "GOAWAY last ID increased"));
        }
        self.peer_goaway = Some(g.last_id);
        if !g.drain {
            self.peer_final_goaway = true;
        }
        // Our streams above the last ID were never processed: refuse them.
        let mut refused: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(id, s)| s.local && **id > g.last_id)
            .map(|(id, _)| *id)
            .collect();
        refused.sort_unstable();
        for id in refused {
            self.discard_stream(id);
            self.events.push_back(Event::StreamRefused { id });
        }
        let last = g.last_id;
        self.ctrl
            .retain(|e| !matches!(&e.ctrl, Ctrl::Open(o) if o.stream_id > last));
        self.events.push_back(Event::GoAway {
            last_id: g.last_id,
            code: g.code,
            drain: g.drain,
        });
        Ok(())
    }

    /// Whether `id` was opened at some point (by either side), as far as we know.
    fn was_opened(&self, id: StreamId) -> bool {
        if self.role.opens(id) {
            id < self.next_local_id
        } else {
            id != 0 && id <= self.highest_peer_id
        }
    }

    fn on_window(&mut self, w: Window) -> Result<(), (ErrorCode, &'static str)> {
        let inc = u64::from(w.increment);
        if w.stream_id == 0 {
            self.link_send_credit += inc;
            if self.link_send_credit > MAX_CREDIT {
                return Err((ErrorCode::FLOW_CONTROL_ERROR, "link window overflow"));
            }
            return Ok(());
        }
        let opened = self.was_opened(w.stream_id);
        match self.streams.get_mut(&w.stream_id) {
            Some(s) => {
                s.send_credit += inc;
                if s.send_credit > MAX_CREDIT {
                    return Err((ErrorCode::FLOW_CONTROL_ERROR, "stream window overflow"));
                }
                if s.wants_send() && !s.in_sendable {
                    s.in_sendable = true;
                    self.sendable.push_back(w.stream_id);
                }
                Ok(())
            }
            // protocol.md §6.2: racy on a closed stream, impossible on an idle one.
            None if opened => Ok(()),
            None => Err((ErrorCode::PROTOCOL_ERROR, "WINDOW on an idle stream")),
        }
    }

    fn on_open(&mut self, o: Open) -> Result<(), (ErrorCode, &'static str)> {
        let id = o.stream_id;
        // protocol.md §2: the peer's parity, increasing.
        if self.role.opens(id) {
            return Err((ErrorCode::PROTOCOL_ERROR, "OPEN with our parity"));
        }
        if id <= self.highest_peer_id {
            return Err((ErrorCode::PROTOCOL_ERROR, "OPEN ID not increasing"));
        }
        // protocol.md §2.1: we told the peer it may open no streams at all.
        if self.config.max_concurrent_streams == 0 {
            return Err((
                ErrorCode::PROTOCOL_ERROR,
                "OPEN from a side that may not open",
            ));
        }
        self.highest_peer_id = id;
        // protocol.md §7: above our final GOAWAY's last ID, the stream is not processed.
        if let Drain::Final { last_id } = self.drain
            && id > last_id
        {
            return Ok(());
        }
        // protocol.md §8: over our concurrency limit, refuse the stream, not the link.
        if self.peer_open >= self.config.max_concurrent_streams as usize {
            self.stats.streams_refused += 1;
            return self.push_peer_ctrl(Ctrl::Reset(Reset {
                stream_id: id,
                code: ErrorCode::REFUSED_STREAM,
                final_size: 0,
            }));
        }
        let mut s = Stream::new(false, self.config.stream_window, self.peer.stream_window);
        s.fin_recv = o.fin;
        self.streams.insert(id, s);
        self.peer_open += 1;
        self.last_accepted_peer_id = id;
        self.stats.streams_accepted += 1;
        self.events.push_back(Event::StreamOpened {
            id,
            kind: o.kind,
            meta: o.meta,
        });
        if o.fin {
            self.events.push_back(Event::StreamFinished(id));
        }
        Ok(())
    }

    fn on_reply(&mut self, r: Reply) -> Result<(), (ErrorCode, &'static str)> {
        let id = r.stream_id;
        if !self.role.opens(id) {
            return Err((ErrorCode::PROTOCOL_ERROR, "REPLY on a peer-opened stream"));
        }
        let opened = self.was_opened(id);
        match self.streams.get_mut(&id) {
            Some(s) => {
                if s.replied {
                    return Err((ErrorCode::PROTOCOL_ERROR, "second REPLY"));
                }
                s.replied = true;
                self.events
                    .push_back(Event::StreamReplied { id, meta: r.meta });
                Ok(())
            }
            None if opened => Ok(()),
            None => Err((ErrorCode::PROTOCOL_ERROR, "REPLY on an idle stream")),
        }
    }

    fn on_data(&mut self, d: Data) -> Result<(), (ErrorCode, &'static str)> {
        let len = d.payload.len() as u64;
        // protocol.md §8: floods of empty DATA frames.
        if len == 0 && !d.fin {
            self.empty_data_run += 1;
            if self.empty_data_run > self.config.max_empty_data {
                return Err((ErrorCode::ENHANCE_YOUR_CALM, "empty DATA flood"));
            }
        } else if len > 0 {
            self.empty_data_run = 0;
        }
        // protocol.md §5.2: every DATA byte counts against the link window, whatever its
        // stream's state.
        if len > self.link_recv_credit {
            return Err((ErrorCode::FLOW_CONTROL_ERROR, "DATA beyond the link window"));
        }
        self.link_recv_credit -= len;
        self.stats.data_received += len;
        // protocol.md §5.3: the bytes are placed in their stream's buffer (bounded by the
        // stream window) or discarded right here; either way they leave the link window.
        self.add_link_credit(len);
        let id = d.stream_id;
        let Some(s) = self.streams.get_mut(&id) else {
            if !self.was_opened(id) {
                return Err((ErrorCode::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // protocol.md §6.2: racy after a RESET or refusal: discard (credit returned above).
            self.stats.data_discarded += len;
            return Ok(());
        };
        if s.fin_recv {
            return Err((ErrorCode::PROTOCOL_ERROR, "DATA after FIN"));
        }
        if s.local && !s.replied {
            return Err((ErrorCode::PROTOCOL_ERROR, "DATA before REPLY"));
        }
        if len > s.recv_credit {
            return Err((
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA beyond the stream window",
            ));
        }
        s.recv_credit -= len;
        s.recv_total += len;
        if s.recv_credit <= u64::from(s.recv_window / 4) {
            s.recv_starved = true;
        }
        if len > 0 {
            s.recv.push(d.payload);
            if s.readable_armed {
                s.readable_armed = false;
                self.events.push_back(Event::StreamReadable(id));
            }
        }
        if d.fin {
            s.fin_recv = true;
            self.events.push_back(Event::StreamFinished(id));
        }
        Ok(())
    }

    fn on_reset(&mut self, r: Reset) -> Result<(), (ErrorCode, &'static str)> {
        let id = r.stream_id;
        let Some(s) = self.streams.get(&id) else {
            if self.was_opened(id) {
                return Ok(());
            }
            return Err((ErrorCode::PROTOCOL_ERROR, "RESET on an idle stream"));
        };
        // protocol.md §5.4: the link is ordered, so the final size is what we received.
        if r.final_size != s.recv_total {
            return Err((ErrorCode::FLOW_CONTROL_ERROR, "RESET final size mismatch"));
        }
        let refused = s.local && !s.replied && r.code == ErrorCode::REFUSED_STREAM;
        self.discard_stream(id);
        self.events.push_back(if refused {
            Event::StreamRefused { id }
        } else {
            Event::StreamReset { id, code: r.code }
        });
        Ok(())
    }

    /// Removes a stream that was reset or refused, dropping the data it held unread (its
    /// link credit was returned on receipt, protocol.md §5.3, §5.4).
    fn discard_stream(&mut self, id: StreamId) {
        if let Some(s) = self.remove_stream(id) {
            self.stats.data_discarded += s.recv.len() as u64;
        }
    }

    /// Takes stream `id` out of the session with everything that refers to it: its count
    /// against the stream limit, its window growth, its places in the send and WINDOW queues.
    /// Every way a stream ends goes through here, so nothing of it stays behind.
    fn remove_stream(&mut self, id: StreamId) -> Option<Stream> {
        let s = self.streams.remove(&id)?;
        if s.local {
            self.local_open -= 1;
        } else {
            self.peer_open -= 1;
        }
        self.window_growth -= u64::from(s.recv_window.saturating_sub(self.config.stream_window));
        // Each queue holds a stream at most once (the flags), and at most the open streams.
        if s.in_sendable {
            self.sendable.retain(|&x| x != id);
            self.link_blocked.retain(|&x| x != id);
        }
        if s.in_window_queue {
            self.window_queue.retain(|&x| x != id);
        }
        Some(s)
    }

    /// Counts `n` bytes as consumed on the link; schedules a link WINDOW past half the window.
    fn add_link_credit(&mut self, n: u64) {
        self.link_pending_credit += n;
        // protocol.md §5.3: return credit once half the window is consumed.
        if self.link_pending_credit >= u64::from(self.config.link_window / 2).max(1) {
            self.link_window_due = true;
        }
    }

    fn maybe_remove(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(Stream::is_done) {
            self.remove_stream(id);
        }
    }

    // ---------------------------------------------------------------- timers

    /// When [`handle_timeout`](Self::handle_timeout) should next be called; `None` if never.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let mut t = self.last_rx + self.config.idle_timeout;
        if self.ping_out.is_none()
            && let Some(p) = self.next_ping_at
        {
            t = t.min(p);
        }
        if let Drain::AwaitingAck { deadline, .. } = self.drain {
            t = t.min(deadline);
        }
        Some(t)
    }

    /// Runs the timers due at `now`: idle timeout, keepalive PING, drain PING deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if now >= self.last_rx + self.config.idle_timeout {
            tracing::debug!("mux link idle timeout");
            self.close_with(Error::IdleTimeout);
            return;
        }
        if let Drain::AwaitingAck { deadline, .. } = self.drain
            && now >= deadline
        {
            self.send_final_goaway();
        }
        if self.ping_out.is_none()
            && let Some(p) = self.next_ping_at
            && now >= p
        {
            self.ping();
        }
        self.check_drained();
    }

    /// Sends a PING now (unless one is outstanding); its ACK yields [`Event::Rtt`].
    pub fn ping(&mut self) {
        if self.closed.is_some() || self.ping_out.is_some() {
            return;
        }
        let payload = self.next_ping_payload();
        self.ping_out = Some(PingOut {
            payload,
            sent_at: None,
        });
        self.push_ctrl(Ctrl::Ping(Ping {
            ack: false,
            payload,
        }));
    }

    fn next_ping_payload(&mut self) -> [u8; 8] {
        self.ping_seq += 1;
        self.ping_seq.to_be_bytes()
    }

    fn push_ctrl(&mut self, ctrl: Ctrl) {
        self.ctrl.push_back(CtrlEntry {
            ctrl,
            peer_induced: false,
        });
    }

    // ---------------------------------------------------------------- drain and close

    /// Starts a graceful two-phase drain (protocol.md §7): GOAWAY(DRAIN) and a PING now; the
    /// final GOAWAY with the real last ID when the PING is acknowledged or after
    /// `drain_ping_timeout`. No new local stream may be opened. The grace period for the
    /// remaining streams is the caller's: call [`close`](Self::close) when it ends.
    pub fn drain(&mut self, now: Instant) {
        if self.closed.is_some() || self.drain != Drain::None {
            return;
        }
        self.push_ctrl(Ctrl::GoAway(GoAway {
            last_id: u64::MAX,
            code: ErrorCode::NO_ERROR,
            drain: true,
            reason: Bytes::new(),
        }));
        let token = self.next_ping_payload();
        self.push_ctrl(Ctrl::Ping(Ping {
            ack: false,
            payload: token,
        }));
        self.drain = Drain::AwaitingAck {
            token,
            deadline: now + self.config.drain_ping_timeout,
        };
    }

    /// Sends a drain **notice** (protocol.md §7, "Drain notice"): GOAWAY(DRAIN) with last ID
    /// 2^64−1, and nothing else. Unlike [`drain`](Self::drain) it starts no phase 2 and this
    /// side keeps opening streams: the peer learns that this side wants the link gone and
    /// drains it itself once it has another. Once per session; nothing after a drain or close.
    pub fn drain_notice(&mut self) {
        if self.closed.is_some() || self.drain != Drain::None || self.notice_sent {
            return;
        }
        self.notice_sent = true;
        self.push_ctrl(Ctrl::GoAway(GoAway {
            last_id: u64::MAX,
            code: ErrorCode::NO_ERROR,
            drain: true,
            reason: Bytes::new(),
        }));
    }

    fn send_final_goaway(&mut self) {
        let last_id = self.last_accepted_peer_id;
        self.push_ctrl(Ctrl::GoAway(GoAway {
            last_id,
            code: ErrorCode::NO_ERROR,
            drain: false,
            reason: Bytes::new(),
        }));
        self.drain = Drain::Final { last_id };
    }

    fn check_drained(&mut self) {
        if self.closed.is_none()
            && self.streams.is_empty()
            && (matches!(self.drain, Drain::Final { .. }) || self.peer_final_goaway)
        {
            self.events.push_back(Event::Drained);
            self.close_with(Error::Drained);
        }
    }

    /// Closes the link now with GOAWAY(`code`); every stream is dropped. Use a code other than
    /// `NO_ERROR` (normally `CANCEL`) while streams are open: the peer reads a `NO_ERROR`
    /// GOAWAY as a graceful final GOAWAY (protocol.md §9).
    pub fn close(&mut self, code: ErrorCode) {
        self.close_with(Error::LocallyClosed { code });
    }

    fn close_with(&mut self, error: Error) {
        if self.closed.is_some() {
            return;
        }
        let code = error.code();
        match error {
            // Drained: the final GOAWAY is already queued or received; flush what is queued.
            Error::Drained => {}
            Error::PeerClosed { .. } => {
                self.ctrl.clear();
                self.window_queue.clear();
                self.link_window_due = false;
            }
            _ => {
                // Keep our SETTINGS if still unsent: it must be the first frame.
                self.ctrl
                    .retain(|e| matches!(&e.ctrl, Ctrl::Settings(s) if !s.ack));
                self.window_queue.clear();
                self.link_window_due = false;
                let reason = match &error {
                    Error::Protocol { reason, .. } => Bytes::from_static(reason.as_bytes()),
                    _ => Bytes::new(),
                };
                self.push_ctrl(Ctrl::GoAway(GoAway {
                    last_id: self.last_accepted_peer_id,
                    code,
                    drain: false,
                    reason,
                }));
            }
        }
        self.peer_ctrl = self.ctrl.iter().filter(|e| e.peer_induced).count();
        self.streams.clear();
        self.sendable.clear();
        self.link_blocked.clear();
        self.window_queue.clear();
        self.local_open = 0;
        self.peer_open = 0;
        self.window_growth = 0;
        self.events.push_back(Event::Closed {
            code,
            error: error.clone(),
        });
        self.closed = Some(error);
    }

    // ---------------------------------------------------------------- output

    /// The next event, if any. Drain it after every `handle_*` call and stream operation.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) may have frames to send now. A driver
    /// wakes its writer only when this is true (or the session closed, or
    /// [`poll_timeout`](Self::poll_timeout) moved earlier), so stream operations that leave
    /// nothing to send cost no wake-up. It may say `true` when `poll_transmit` then finds
    /// nothing (a queued OPEN before the peer's SETTINGS, a WINDOW without credit to return),
    /// never `false` when it would send something.
    #[must_use]
    pub fn wants_transmit(&self) -> bool {
        if !self.ctrl.is_empty() {
            return true;
        }
        if self.closed.is_some() || !self.peer_settings_seen {
            return false;
        }
        (self.link_window_due && self.link_pending_credit > 0)
            || !self.window_queue.is_empty()
            || !self.sendable.is_empty()
            || (self.link_send_credit > 0 && !self.link_blocked.is_empty())
    }

    /// Appends frames for one vectored write to `out` and returns their total byte length;
    /// 0 when there is nothing to send.
    ///
    /// Up to `max_bytes` are produced (at least one frame if anything is pending, even a
    /// larger control frame). Order: control frames (SETTINGS, PING, RESET, GOAWAY, OPEN,
    /// REPLY, in the order they were queued), then WINDOW, then DATA round-robin across
    /// streams with both data and credit, split to the credit and the peer's max frame size.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<Bytes>, max_bytes: usize) -> usize {
        let mut total = 0usize;
        // Control frames, FIFO. Before the peer's SETTINGS only SETTINGS and GOAWAY may leave
        // (protocol.md §4).
        while let Some(e) = self.ctrl.front() {
            if !self.peer_settings_seen && !matches!(e.ctrl, Ctrl::Settings(_) | Ctrl::GoAway(_)) {
                break;
            }
            let frame = match &e.ctrl {
                Ctrl::Settings(s) => Frame::Settings(*s),
                Ctrl::Ping(p) => Frame::Ping(*p),
                Ctrl::Reset(r) => Frame::Reset(*r),
                Ctrl::GoAway(g) => Frame::GoAway(g.clone()),
                Ctrl::Open(o) => {
                    // A stream finished before its OPEN left carries FIN on the OPEN
                    // (protocol.md §3.2): a request without a body costs one frame.
                    let mut o = o.clone();
                    if let Some(s) = self.streams.get_mut(&o.stream_id)
                        && s.fin_queued
                        && s.send.is_empty()
                        && !s.fin_sent
                    {
                        s.fin_sent = true;
                        o.fin = true;
                    }
                    Frame::Open(o)
                }
                Ctrl::Reply(r) => Frame::Reply(r.clone()),
            };
            let len = frame.encoded_len();
            if total > 0 && total + len > max_bytes {
                break;
            }
            if let Frame::Ping(p) = &frame
                && !p.ack
                && let Some(out) = self.ping_out.as_mut()
                && out.payload == p.payload
            {
                out.sent_at = Some(now);
            }
            self.enc.encode(&frame, out);
            total += len;
            self.stats.frames_sent += 1;
            if let Frame::Open(o) = &frame
                && o.fin
            {
                self.maybe_remove(o.stream_id);
            }
            if let Some(e) = self.ctrl.pop_front()
                && e.peer_induced
            {
                self.peer_ctrl -= 1;
            }
        }
        if self.closed.is_none() && self.peer_settings_seen {
            total = self.transmit_windows(out, total, max_bytes);
            total = self.transmit_data(out, total, max_bytes);
        }
        self.enc.flush(out);
        self.check_drained();
        total
    }

    fn transmit_windows(&mut self, out: &mut Vec<Bytes>, mut total: usize, max: usize) -> usize {
        const LEN: usize = HEADER_LEN + frame::WINDOW_LEN;
        if self.link_window_due && self.link_pending_credit > 0 && total + LEN <= max {
            let inc = self.link_pending_credit.min(u64::from(u32::MAX));
            self.link_pending_credit -= inc;
            self.link_recv_credit += inc;
            self.link_window_due = self.link_pending_credit > 0;
            self.enc.encode(
                &Frame::Window(Window {
                    stream_id: 0,
                    increment: inc as u32,
                }),
                out,
            );
            self.stats.frames_sent += 1;
            total += LEN;
        }
        let max_window = self.config.max_stream_window;
        while total + LEN <= max {
            let Some(id) = self.window_queue.pop_front() else {
                break;
            };
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.in_window_queue = false;
            // protocol.md §5.5: the window limited the sender and the reader has caught up by
            // the time the WINDOW leaves, so a larger window moves more per round trip
            // without piling data up here.
            // The growth of all streams together stays within the link window, so memory
            // stays bounded however many streams grew and then stopped reading.
            if s.recv_starved && s.recv.is_empty() && !s.fin_recv && s.recv_window < max_window {
                let grown = s.recv_window.saturating_mul(2).min(max_window);
                let growth = u64::from(grown - s.recv_window);
                if self.window_growth + growth <= u64::from(self.config.link_window) {
                    self.window_growth += growth;
                    s.recv_pending_credit += growth;
                    s.recv_window = grown;
                }
            }
            s.recv_starved = false;
            let inc = s.recv_pending_credit.min(u64::from(u32::MAX));
            if inc == 0 || s.fin_recv {
                continue;
            }
            s.recv_pending_credit -= inc;
            s.recv_credit += inc;
            self.enc.encode(
                &Frame::Window(Window {
                    stream_id: id,
                    increment: inc as u32,
                }),
                out,
            );
            self.stats.frames_sent += 1;
            total += LEN;
        }
        total
    }

    fn transmit_data(&mut self, out: &mut Vec<Bytes>, mut total: usize, max: usize) -> usize {
        let max_frame = self.peer.max_frame_size as usize;
        if self.link_send_credit > 0 {
            // They waited for the link, ahead of the streams queued since: they go first.
            while let Some(id) = self.link_blocked.pop_back() {
                self.sendable.push_front(id);
            }
        }
        while let Some(id) = self.sendable.pop_front() {
            let room = max.saturating_sub(total + HEADER_LEN);
            if total > 0 && room == 0 {
                self.sendable.push_front(id);
                break;
            }
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.in_sendable = false;
            let (payload, fin) = if !s.send.is_empty() {
                let credit = s.send_credit.min(self.link_send_credit);
                if credit == 0 {
                    if s.send_credit > 0 {
                        // Blocked by the link: it waits for a link WINDOW, aside, so that
                        // streams with only a FIN to send still go (protocol.md §5.2).
                        s.in_sendable = true;
                        self.link_blocked.push_back(id);
                    }
                    // Blocked by its own window: rescheduled by the stream's WINDOW.
                    continue;
                }
                let n = usize::try_from(credit)
                    .unwrap_or(usize::MAX)
                    .min(max_frame)
                    .min(room.max(1));
                let chunk = s.send.take(n).unwrap_or_default();
                let n64 = chunk.len() as u64;
                s.send_credit -= n64;
                s.send_total += n64;
                self.link_send_credit -= n64;
                self.stats.data_sent += n64;
                let fin = s.fin_queued && s.send.is_empty();
                (chunk, fin)
            } else if s.fin_queued && !s.fin_sent {
                (Bytes::new(), true)
            } else {
                continue;
            };
            if fin {
                s.fin_sent = true;
            }
            total += HEADER_LEN + payload.len();
            self.enc.data(id, &payload, fin, out);
            self.stats.frames_sent += 1;
            if s.want_writable && s.send.len() < self.config.stream_send_buffer {
                s.want_writable = false;
                self.events.push_back(Event::StreamWritable(id));
            }
            if s.wants_send() {
                s.in_sendable = true;
                self.sendable.push_back(id);
            }
            if fin {
                self.maybe_remove(id);
            }
        }
        total
    }

    // ---------------------------------------------------------------- stream operations

    fn check_open_allowed(&self) -> Result<(), Error> {
        if self.closed.is_some() {
            return Err(Error::LinkClosed);
        }
        if self.drain != Drain::None || self.peer_goaway.is_some() {
            return Err(Error::GoingAway);
        }
        Ok(())
    }

    /// Opens a stream carrying `kind` and `meta` (queued as OPEN).
    ///
    /// Fails with [`Error::GoingAway`] once either side sent GOAWAY, with
    /// [`Error::TooManyStreams`] at the peer's concurrency limit, and with
    /// [`Error::MetadataTooLarge`] beyond the peer's metadata limit. Streams opened before the
    /// peer's SETTINGS arrived are sent once they do.
    pub fn open(&mut self, kind: StreamKind, meta: Bytes) -> Result<StreamId, Error> {
        self.check_open_allowed()?;
        if meta.len() + 1 > self.peer.max_metadata_size as usize {
            return Err(Error::MetadataTooLarge {
                len: meta.len(),
                max: u64::from(self.peer.max_metadata_size),
            });
        }
        let max = self.peer.max_concurrent_streams;
        if self.local_open >= max as usize {
            return Err(Error::TooManyStreams {
                max: u64::from(max),
            });
        }
        let id = self.next_local_id;
        // protocol.md §2: IDs never wrap; a link that ran out must be replaced.
        self.next_local_id = id.checked_add(2).ok_or(Error::GoingAway)?;
        let s = Stream::new(true, self.config.stream_window, self.peer.stream_window);
        self.streams.insert(id, s);
        self.local_open += 1;
        self.stats.streams_opened += 1;
        self.push_ctrl(Ctrl::Open(Open {
            stream_id: id,
            kind,
            meta,
            fin: false,
        }));
        Ok(id)
    }

    fn stream_mut(&mut self, id: StreamId) -> Result<&mut Stream, Error> {
        if self.closed.is_some() {
            return Err(Error::LinkClosed);
        }
        self.streams.get_mut(&id).ok_or(Error::UnknownStream(id))
    }

    /// Replies to a stream the peer opened (queued as REPLY). Must precede any write.
    pub fn reply(&mut self, id: StreamId, meta: Bytes) -> Result<(), Error> {
        let max = self.peer.max_metadata_size;
        let s = self.stream_mut(id)?;
        if s.local {
            return Err(Error::InvalidState {
                id,
                reason: "reply on a stream we opened",
            });
        }
        if s.replied {
            return Err(Error::InvalidState {
                id,
                reason: "already replied",
            });
        }
        if meta.len() > max as usize {
            return Err(Error::MetadataTooLarge {
                len: meta.len(),
                max: u64::from(max),
            });
        }
        s.replied = true;
        self.push_ctrl(Ctrl::Reply(Reply {
            stream_id: id,
            meta,
        }));
        Ok(())
    }

    fn check_writable(s: &Stream, id: StreamId) -> Result<(), Error> {
        if !s.local && !s.replied {
            return Err(Error::InvalidState {
                id,
                reason: "reply before sending data",
            });
        }
        if s.fin_queued {
            return Err(Error::InvalidState {
                id,
                reason: "stream already finished",
            });
        }
        Ok(())
    }

    fn schedule_send(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id)
            && !s.in_sendable
            && s.wants_send()
        {
            s.in_sendable = true;
            self.sendable.push_back(id);
        }
    }

    /// Buffers up to the stream's free send buffer of `data` and returns how many bytes it
    /// took (possibly 0); the caller keeps the rest and retries on
    /// [`Event::StreamWritable`]. Large pieces are not copied; pieces under 4 KiB are copied
    /// together, so many tiny writes hold their bytes, not one buffer each.
    pub fn write(&mut self, id: StreamId, data: Bytes) -> Result<usize, Error> {
        let limit = self.config.stream_send_buffer;
        let s = self.stream_mut(id)?;
        Self::check_writable(s, id)?;
        let n = data.len().min(limit.saturating_sub(s.send.len()));
        if n < data.len() {
            s.want_writable = true;
        }
        if n > 0 {
            s.send.push(data.slice(..n));
            self.schedule_send(id);
        }
        Ok(n)
    }

    /// Ends our half of the stream: FIN follows the buffered data.
    pub fn finish(&mut self, id: StreamId) -> Result<(), Error> {
        let s = self.stream_mut(id)?;
        Self::check_writable(s, id)?;
        s.fin_queued = true;
        self.schedule_send(id);
        Ok(())
    }

    /// Aborts both directions of the stream with RESET(`code`); it is gone at once. Unread
    /// received data is dropped.
    pub fn reset(&mut self, id: StreamId, code: ErrorCode) -> Result<(), Error> {
        let s = self.stream_mut(id)?;
        let final_size = s.send_total;
        self.push_ctrl(Ctrl::Reset(Reset {
            stream_id: id,
            code,
            final_size,
        }));
        self.discard_stream(id);
        self.check_drained();
        Ok(())
    }

    /// Reads up to `max` bytes (at least 1) of the stream, as received: `Ok(Some(bytes))`,
    /// `Ok(None)` at the end of the stream (after the peer's FIN), or [`Error::Blocked`] when
    /// nothing is buffered yet. Reading is what returns stream credit to the peer (protocol.md
    /// §5.3).
    pub fn read(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, Error> {
        let s = self.stream_mut(id)?;
        let Some(chunk) = s.recv.take(max) else {
            s.readable_armed = true;
            if s.fin_recv {
                s.end_read = true;
                self.maybe_remove(id);
                self.check_drained();
                return Ok(None);
            }
            return Err(Error::Blocked);
        };
        let n = chunk.len();
        if s.recv.is_empty() {
            s.readable_armed = true;
        }
        if !s.fin_recv {
            s.recv_pending_credit += n as u64;
            if s.recv_pending_credit >= u64::from(s.recv_window / 2).max(1) && !s.in_window_queue {
                s.in_window_queue = true;
                self.window_queue.push_back(id);
            }
        }
        Ok(Some(chunk))
    }

    // ---------------------------------------------------------------- introspection

    /// Bytes of stream `id` received and not yet read (0 for an unknown stream). Reading them
    /// with [`Session::read`] never consumes the stream's FIN.
    pub fn readable_bytes(&self, id: StreamId) -> usize {
        self.streams.get(&id).map_or(0, |s| s.recv.len())
    }

    /// The state of stream `id` (see [`StreamState`]).
    pub fn stream_state(&self, id: StreamId) -> StreamState {
        match self.streams.get(&id) {
            Some(s) => s.state(),
            None if self.was_opened(id) => StreamState::Closed,
            None => StreamState::Idle,
        }
    }

    /// The current receive window of stream `id` (it grows for a reader that keeps up,
    /// protocol.md §5.5), while the stream is open.
    pub fn stream_recv_window(&self, id: StreamId) -> Option<u32> {
        self.streams.get(&id).map(|s| s.recv_window)
    }

    /// This session's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the session is closed (after a violation, an error GOAWAY, [`close`](Self::close),
    /// the idle timeout, or a completed drain).
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether a drain completed (GOAWAY exchanged and every stream finished).
    pub fn is_drained(&self) -> bool {
        matches!(self.closed, Some(Error::Drained))
    }

    /// Whether new streams can be opened here (not closed, no GOAWAY either way).
    pub fn can_open(&self) -> bool {
        self.check_open_allowed().is_ok()
            && self.local_open < self.peer.max_concurrent_streams as usize
    }

    /// The last measured round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Open streams (both directions).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Credit we have to send on the link.
    pub fn link_send_credit(&self) -> u64 {
        self.link_send_credit
    }

    /// Link credit consumed locally but not yet returned to the peer.
    #[cfg(test)]
    pub(crate) fn link_pending_credit(&self) -> u64 {
        self.link_pending_credit
    }

    /// Payload bytes held in stream buffers (received unread, and written unsent).
    pub fn buffered_bytes(&self) -> usize {
        self.streams
            .values()
            .map(|s| s.recv.len() + s.send.len())
            .sum()
    }

    /// A cheap upper-bound estimate of the memory this session holds, in bytes: stream map,
    /// buffered payloads, queues. Payload `Bytes` may pin larger receive buffers; those are
    /// the driver's.
    pub fn memory_estimate(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket, plus the entry.
        let entry = size_of::<(StreamId, Stream)>() + 1;
        let bufs: usize = self
            .streams
            .values()
            .map(|s| s.recv.overhead() + s.send.overhead())
            .sum();
        size_of::<Session>()
            + self.streams.capacity() * entry
            + bufs
            + self.buffered_bytes()
            + self.ctrl.capacity() * size_of::<CtrlEntry>()
            + (self.window_queue.capacity()
                + self.sendable.capacity()
                + self.link_blocked.capacity())
                * size_of::<StreamId>()
            + self.events.capacity() * size_of::<Event>()
    }
}

/// Logs a frame without its payload bytes.
struct FrameSummary<'a>(&'a Frame);

impl std::fmt::Debug for FrameSummary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Frame::Data(d) => write!(
                f,
                "DATA({}, {}B, fin={})",
                d.stream_id,
                d.payload.len(),
                d.fin
            ),
            Frame::Open(o) => write!(f, "OPEN({}, {:?}, {}B)", o.stream_id, o.kind, o.meta.len()),
            Frame::Reply(r) => write!(f, "REPLY({}, {}B)", r.stream_id, r.meta.len()),
            other => write!(f, "{other:?}"),
        }
    }
}
