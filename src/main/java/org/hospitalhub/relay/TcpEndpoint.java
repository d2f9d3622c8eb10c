package org.hospitalhub.relay;

import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

import org.hospitalhub.relay.client.Frames;
import org.hospitalhub.relay.client.SendResult;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.NetSocket;
import io.vertx.core.parsetools.RecordParser;

/**
 * The TCP side of a node: Vert.x NetServer (event loops, no thread per connection), frames parsed by a
 * RecordParser (4-byte length, then JSON; see {@link Frames}). The first frame must be HELLO with the peer's token
 * and cursor; then SEND frames are stored in arrival order before their ACK, the peer's mailbox is pushed as
 * DELIVER frames (at most {@code window} beyond what it acknowledged with RECEIVED), and a connection silent for
 * three heartbeats is closed. A peer has one connection: a new HELLO replaces the older one.
 */
final class TcpEndpoint {

    private static final Logger LOG = Logger.getLogger(TcpEndpoint.class);

    private final RelayNode node;
    private final Map<String, Session> sessions = new ConcurrentHashMap<>();
    private NetServer server;

    TcpEndpoint(RelayNode node) {
        this.node = node;
    }

    Future<NetServer> listen(String host, int port) {
        long idle = node.options.heartbeat().toMillis() * 3;
        server = node.vertx.createNetServer(new NetServerOptions().setHost(host).setPort(port).setTcpNoDelay(true)
                .setTcpKeepAlive(true).setIdleTimeout((int) idle).setIdleTimeoutUnit(TimeUnit.MILLISECONDS));
        server.connectHandler(Session::new);
        return server.listen();
    }

    Future<Void> close() {
        sessions.values().forEach(s -> s.socket.close());
        return server == null ? Future.succeededFuture() : server.close();
    }

    void wake(String hop) {
        Session s = sessions.get(hop);
        if (s != null) {
            s.wake();
        }
    }

    void dropAll() {
        sessions.values().forEach(s -> s.socket.close());
    }

    Map<String, Instant> connectedPeers() {
        Map<String, Instant> m = new TreeMap<>();
        sessions.forEach((k, v) -> m.put(k, v.since));
        return m;
    }

    /** Most packets of one connection stored as one request (its SEND frames that arrived while one was stored). */
    static final int COALESCE = 500;

    /** A validated SEND frame waiting for the store. */
    private record QueuedSend(long ref, List<PacketStore.Incoming> batch) {
    }

    /** One connection. Its fields are touched on its event loop only. */
    private final class Session {
        final NetSocket socket;
        final RecordParser parser;
        final Instant since = Instant.now();
        Peer peer;
        long sentUpTo;
        long ackedUpTo;
        boolean pumping;
        boolean pumpAgain;
        boolean closed;
        /** SEND and RECEIVED frames are handled one after the other: arrival order is storage order. */
        Future<Void> tail = Future.succeededFuture();
        /** SEND frames validated and waiting for the store in flight; stored together, in arrival order, after it. */
        final java.util.ArrayDeque<QueuedSend> queuedSends = new java.util.ArrayDeque<>();
        boolean flushChained;
        /** A store failed: nothing after it is stored (the peer sends again, in order, on a new connection). */
        boolean storeFailed;
        boolean expectLength = true;

        final io.vertx.core.Context context;

        Session(NetSocket socket) {
            this.socket = socket;
            this.context = io.vertx.core.Vertx.currentContext();
            this.parser = RecordParser.newFixed(4, this::onRecord);
            socket.handler(parser);
            socket.closeHandler(v -> {
                closed = true;
                if (peer != null) {
                    sessions.remove(peer.id(), this);
                }
            });
            socket.exceptionHandler(e -> socket.close());
        }

        void onRecord(Buffer b) {
            if (expectLength) {
                int len = b.getInt(0);
                if (len <= 0 || len > Frames.MAX_FRAME) {
                    LOG.debugf("Relay node %s: frame length %d from %s: closing", node.id(), len, socket.remoteAddress());
                    socket.close();
                    return;
                }
                expectLength = false;
                parser.fixedSizeMode(len);
                return;
            }
            expectLength = true;
            parser.fixedSizeMode(4);
            JsonNode f;
            try {
                f = HttpEndpoint.JSON.readTree(b.getBytes());
            } catch (Exception e) {
                refuse(new Refusal(400, "frame is not JSON", null, null, null));
                return;
            }
            String type = f.path("type").asText();
            if (peer == null && !"HELLO".equals(type)) {
                refuse(new Refusal(401, "the first frame must be HELLO with a token", "type", "hello-first", null));
                return;
            }
            switch (type) {
                case "HELLO" -> hello(f);
                case "SEND" -> send(f);
                case "RECEIVED" -> received(f.path("cursor").asLong());
                case "PING" -> write(Frames.frame("PONG"));
                case "PONG" -> {
                    // a live peer; the idle timer was reset by the read itself
                }
                default -> refuse(new Refusal(400, "unknown frame type '" + type + "'", "type", "known", null));
            }
        }

        void hello(JsonNode f) {
            if (peer != null) {
                refuse(new Refusal(400, "HELLO sent twice", "type", "hello-once", null));
                return;
            }
            Peer p = node.authenticate(f.path("token").asText(null)).orElse(null);
            if (p == null) {
                refuse(new Refusal(401, "unknown relay token", "token", "known-token", null));
                return;
            }
            try {
                node.checkTransport(p, Topology.Transport.TCP);
            } catch (Refusal r) {
                refuse(r);
                return;
            }
            peer = p;
            sentUpTo = Math.max(0, f.path("cursor").asLong(0));
            ackedUpTo = sentUpTo;
            Session older = sessions.put(p.id(), this);
            if (older != null) {
                older.socket.close();
            }
            write(Frames.frame("WELCOME").put("id", p.id()).put("node", node.id())
                    .put("heartbeatSeconds", node.options.heartbeat().toSeconds()));
            // what the peer already had before it reconnected is acknowledged by its cursor
            long cursor = sentUpTo;
            tail = tail.compose(v -> node.vertx.executeBlocking(() -> {
                node.store.acknowledge(p.id(), cursor, node.clock.instant());
                return null;
            }, false)).recover(e -> Future.succeededFuture()).mapEmpty();
            tail.onComplete(v -> pump());
        }

        void send(JsonNode f) {
            long ref = f.path("ref").asLong();
            List<PacketStore.Incoming> batch;
            try {
                batch = node.validate(f.get("packets"), peer);
            } catch (Refusal r) {
                ObjectNode nack = Frames.frame("NACK").put("ref", ref).put("status", r.status()).put("error", r.getMessage());
                if (r.field() != null) {
                    nack.put("field", r.field());
                }
                if (r.rule() != null) {
                    nack.put("rule", r.rule());
                }
                if (r.packetId() != null) {
                    nack.put("packetId", r.packetId());
                }
                write(nack);
                return;
            }
            queuedSends.add(new QueuedSend(ref, batch));
            if (!flushChained) {
                chainFlush();
            }
        }

        /**
         * Stores, after what is in flight, every SEND frame that arrived meanwhile (up to {@link #COALESCE} packets)
         * as one request, and answers each frame with its own ACK. A connection thus has one request at a time in the
         * store writer's queue (order kept, and nothing after a failed store is stored), yet a peer that sends
         * without waiting for each ACK is not held to one frame per group commit.
         */
        void chainFlush() {
            flushChained = true;
            Promise<Void> next = Promise.promise();
            Future<Void> previous = tail;
            tail = next.future();
            Peer from = peer;
            previous.onComplete(v -> {
                flushChained = false;
                List<QueuedSend> take = new ArrayList<>();
                List<PacketStore.Incoming> all = new ArrayList<>();
                while (!queuedSends.isEmpty() && (take.isEmpty() || all.size() + queuedSends.peek().batch().size() <= COALESCE)) {
                    QueuedSend q = queuedSends.poll();
                    take.add(q);
                    all.addAll(q.batch());
                }
                if (!queuedSends.isEmpty()) {
                    chainFlush(); // the rest goes after this one
                }
                if (closed || storeFailed || take.isEmpty()) {
                    next.complete(); // not stored, not acknowledged: the peer sends again on a new connection
                    return;
                }
                Future.fromCompletionStage(node.storeAsync(all, from), context).onComplete(ar -> {
                    if (ar.succeeded()) {
                        int i = 0;
                        for (QueuedSend q : take) {
                            ObjectNode ack = Frames.frame("ACK").put("ref", q.ref());
                            ArrayNode results = ack.putArray("results");
                            for (SendResult r : ar.result().subList(i, i + q.batch().size())) {
                                ObjectNode o = results.addObject().put("packetId", r.packetId()).put("status", r.status().name());
                                if (r.reason() != null) {
                                    o.put("reason", r.reason());
                                }
                            }
                            i += q.batch().size();
                            write(ack);
                        }
                    } else {
                        // not stored: no ACK; the peer's timeout makes it send again on a new connection
                        storeFailed = true;
                        LOG.warnf("Relay node %s: storing %d packets from %s failed (not acknowledged): %s", node.id(),
                                all.size(), from.id(), ar.cause().toString());
                        socket.close();
                    }
                    next.complete();
                });
            });
        }

        void received(long cursor) {
            if (cursor <= ackedUpTo) {
                return;
            }
            ackedUpTo = cursor;
            Peer p = peer;
            tail = tail.compose(v -> node.vertx.executeBlocking(() -> node.store.acknowledge(p.id(), cursor,
                    node.clock.instant()), false)).recover(e -> Future.succeededFuture()).mapEmpty();
            pump();
        }

        void wake() {
            context.runOnContext(v -> pump());
        }

        /** Pushes the peer's mailbox after what was already sent, keeping at most {@code window} unacknowledged. */
        void pump() {
            if (closed || peer == null) {
                return;
            }
            if (pumping) {
                pumpAgain = true;
                return;
            }
            int room = (int) Math.min(node.options.window() - (sentUpTo - ackedUpTo), 200);
            if (room <= 0) {
                return;
            }
            pumping = true;
            pumpAgain = false;
            long after = sentUpTo;
            node.vertx.executeBlocking(() -> node.store.pending(peer.id(), after, room), false).onComplete(ar -> {
                pumping = false;
                if (closed) {
                    return;
                }
                if (ar.succeeded() && !ar.result().isEmpty()) {
                    List<PacketStore.Stored> rows = ar.result();
                    StringBuilder sb = new StringBuilder("{\"type\":\"DELIVER\",\"packets\":[");
                    for (int i = 0; i < rows.size(); i++) {
                        sb.append(i == 0 ? "" : ",").append("{\"seq\":").append(rows.get(i).seq()).append(",\"packet\":")
                                .append(rows.get(i).body()).append('}');
                    }
                    byte[] bytes = sb.append("]}").toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
                    socket.write(Buffer.buffer(bytes.length + 4).appendInt(bytes.length).appendBytes(bytes));
                    sentUpTo = Math.max(sentUpTo, rows.get(rows.size() - 1).seq());
                    pumpAgain = pumpAgain || rows.size() == room;
                }
                if (pumpAgain) {
                    pump();
                }
            });
        }

        void refuse(Refusal r) {
            write(Frames.frame("ERROR").put("status", r.status()).put("error", r.getMessage()));
            LOG.debugf("Relay node %s: TCP peer %s refused: %s", node.id(), socket.remoteAddress(), r.getMessage());
            socket.end();
        }

        void write(JsonNode frame) {
            byte[] bytes;
            try {
                bytes = HttpEndpoint.JSON.writeValueAsBytes(frame);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            socket.write(Buffer.buffer(bytes.length + 4).appendInt(bytes.length).appendBytes(bytes));
        }
    }
}
