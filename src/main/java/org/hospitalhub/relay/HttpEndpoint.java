package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

import org.hospitalhub.relay.client.SendResult;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.RoutingContext;

/**
 * The HTTP side of a node, for its clients and child nodes: {@code POST /relay/v1/packets} (a batch, stored before
 * the 200), {@code GET /relay/v1/inbox?cursor=N&wait=S&limit=L} (acknowledges the peer's mailbox up to N, then
 * answers with what follows, waiting up to S seconds when there is nothing yet), {@code GET /relay/v1/hello}.
 * Authentication: {@code Authorization: Bearer <token>} issued by this node. Outside /api: the hub's API keys do not
 * open it and these tokens do not open the API.
 */
final class HttpEndpoint {

    private static final Logger LOG = Logger.getLogger(HttpEndpoint.class);
    static final ObjectMapper JSON = new ObjectMapper();

    private final RelayNode node;
    private final Map<String, Poll> waiting = new ConcurrentHashMap<>();
    private final Map<String, Instant> lastPoll = new ConcurrentHashMap<>();

    HttpEndpoint(RelayNode node) {
        this.node = node;
    }

    void handle(RoutingContext ctx) {
        String path = ctx.request().path();
        String method = ctx.request().method().name();
        try {
            if (!node.running()) {
                error(ctx, new Refusal(503, "relay node " + node.id() + " is not running", null, null, null));
                return;
            }
            Peer peer = authenticate(ctx);
            if (path.startsWith("/relay/v1/files/")) { // files travel over HTTP whatever the packets' transport
                files(ctx, peer, path.substring("/relay/v1/files/".length()), method);
                return;
            }
            node.checkTransport(peer, Topology.Transport.HTTP);
            switch (path) {
                case "/relay/v1/packets" -> {
                    if (!"POST".equals(method)) {
                        throw new Refusal(405, "use POST on /relay/v1/packets", null, null, null);
                    }
                    send(ctx, peer);
                }
                case "/relay/v1/inbox" -> {
                    if (!"GET".equals(method)) {
                        throw new Refusal(405, "use GET on /relay/v1/inbox", null, null, null);
                    }
                    inbox(ctx, peer);
                }
                case "/relay/v1/hello" -> ok(ctx, JSON.createObjectNode().put("id", peer.id()).put("node", node.id())
                        .put("level", node.topology.level()));
                default -> throw new Refusal(404, "no relay endpoint " + path + " (packets, inbox, hello)", null, null, null);
            }
        } catch (Refusal r) {
            error(ctx, r);
        }
    }

    /**
     * Before the body is read: the relay takes JSON and raw bytes, never forms. A form's content type would make the
     * body reader decode the bytes as form fields (a file chunk then failed with 500, seen with curl's default).
     */
    static void refuseForms(RoutingContext ctx) {
        String type = ctx.request().getHeader("Content-Type");
        String t = type == null ? "" : type.strip().toLowerCase(Locale.ROOT);
        if (t.startsWith("application/x-www-form-urlencoded") || t.startsWith("multipart/")) {
            ObjectNode b = JSON.createObjectNode().put("status", 415).put("error", "Content-Type " + type + " is not taken here: "
                    + "send packets as application/json and file chunks as application/octet-stream")
                    .put("field", "Content-Type").put("rule", "media-type");
            ctx.response().setStatusCode(415).putHeader("Content-Type", "application/json").end(b.toString());
            return;
        }
        ctx.next();
    }

    /**
     * {@code PUT /relay/v1/files/<sha256>?size=N&offset=K} appends a chunk (409 with the offset to resume at when K is
     * not where the store is; 422 when the complete file does not match its checksum); {@code GET .../<sha256>/offset}
     * says where to resume; {@code GET .../<sha256>} downloads (fetched through the tree if this node lacks it).
     */
    private void files(RoutingContext ctx, Peer peer, String rest, String method) {
        FileStore files = node.files();
        if (files == null) {
            throw new Refusal(404, "node " + node.id() + " has no file store", null, null, null);
        }
        boolean offsetOnly = rest.endsWith("/offset");
        String sha = offsetOnly ? rest.substring(0, rest.length() - "/offset".length()) : rest;
        if (!FileStore.SHA256.matcher(sha).matches()) {
            throw new Refusal(400, "a file is named by its sha256 (64 lowercase hex digits)", "sha256", "pattern", null);
        }
        if ("PUT".equals(method) && !offsetOnly) {
            long size = number(ctx, "size", -1, 0, Long.MAX_VALUE);
            long offset = number(ctx, "offset", 0, 0, Long.MAX_VALUE);
            if (size < 0) {
                throw new Refusal(400, "size (the whole file's bytes) is required", "size", "required", null);
            }
            byte[] bytes = ctx.body().buffer() == null ? new byte[0] : ctx.body().buffer().getBytes();
            node.vertx.executeBlocking(() -> files.write(sha, size, offset, bytes), false).onComplete(ar -> {
                if (ar.succeeded()) {
                    if (ar.result().complete()) {
                        node.replicateFiles();
                    }
                    ctx.response().setStatusCode(ar.result().complete() ? 201 : 200);
                    ok(ctx, JSON.createObjectNode().put("sha256", sha).put("offset", ar.result().offset())
                            .put("complete", ar.result().complete()));
                } else if (ar.cause() instanceof FileStore.FileRefusal r) {
                    ObjectNode b = JSON.createObjectNode().put("status", r.status()).put("error", r.getMessage())
                            .put("field", r.field()).put("rule", r.rule()).put("offset", r.offset);
                    ctx.response().setStatusCode(r.status()).putHeader("Content-Type", "application/json").end(b.toString());
                } else {
                    LOG.warnf("Relay node %s: a chunk of file %s was not stored: %s", node.id(), sha, ar.cause().toString());
                    error(ctx, new Refusal(503, "the chunk could not be stored; ask for the offset and send again", null, null, null));
                }
            });
            return;
        }
        if (!"GET".equals(method)) {
            throw new Refusal(405, "files: PUT a chunk, GET the file or its offset", null, null, null);
        }
        if (offsetOnly) {
            node.vertx.executeBlocking(() -> {
                FileStore.Chunk at = files.offset(sha);
                return JSON.createObjectNode().put("sha256", sha).put("offset", at.offset()).put("complete", at.complete());
            }, false).onComplete(ar -> {
                if (ar.succeeded()) {
                    ok(ctx, ar.result());
                } else {
                    storeUnavailable(ctx, "the offset of file " + sha + " is unknown", ar.cause());
                }
            });
            return;
        }
        node.vertx.executeBlocking(() -> files.find(sha), false).onComplete(ar -> {
            if (ar.failed() && ar.cause() instanceof FileBackend.Unavailable u) {
                storeUnavailable(ctx, "file " + sha + " not read", u);
            } else if (ar.failed()) {
                error(ctx, new Refusal(502, "file " + sha + " could not be fetched through the tree: " + ar.cause().getMessage(),
                        null, null, null));
            } else if (ar.result().isEmpty()) {
                error(ctx, new Refusal(404, "no file " + sha + " here or above", "sha256", "known-file", null));
            } else {
                FileStore.Download d = ar.result().get();
                ctx.response().putHeader("Content-Type", "application/octet-stream").putHeader("X-Checksum-Sha256", sha);
                if (d.local() != null) {
                    ctx.response().sendFile(d.local().toString());
                } else {
                    stream(ctx, d);
                }
            }
        });
    }

    /** 503 without the store's details (its address, its error), which go to the log. */
    private void storeUnavailable(RoutingContext ctx, String what, Throwable cause) {
        LOG.warnf("Relay node %s: %s: %s", node.id(), what, cause.toString());
        error(ctx, new Refusal(503, "file store unavailable; try again", null, null, null));
    }

    /**
     * Sends a file the backend streams (S3) on a worker thread, waiting while the client's connection is full. A
     * failure after the first bytes resets the connection: the client sees a short body, not a wrong file (and checks
     * the sha256 anyway).
     */
    private void stream(RoutingContext ctx, FileStore.Download d) {
        HttpServerResponse res = ctx.response().putHeader("Content-Length", String.valueOf(d.size()));
        node.vertx.executeBlocking(() -> {
            long sent = 0;
            try (InputStream in = d.stream()) {
                byte[] buf = new byte[64 * 1024];
                for (int n; (n = in.read(buf)) > 0;) {
                    if (res.closed()) {
                        return false;
                    }
                    if (res.writeQueueFull()) {
                        CompletableFuture<Void> drained = new CompletableFuture<>();
                        res.drainHandler(v -> drained.complete(null));
                        res.closeHandler(v -> drained.complete(null));
                        if (res.writeQueueFull()) {
                            drained.get(node.options.requestTimeout().multipliedBy(4).toMillis(), TimeUnit.MILLISECONDS);
                        }
                    }
                    res.write(Buffer.buffer(Arrays.copyOf(buf, n)));
                    sent += n;
                }
            }
            if (sent != d.size()) {
                throw new IOException("the store gave " + sent + " of the file's " + d.size() + " bytes");
            }
            res.end();
            return true;
        }, false).onFailure(e -> {
            if (!res.headWritten()) {
                res.headers().remove("Content-Length");
                storeUnavailable(ctx, "sending a file failed", e);
            } else {
                LOG.warnf("Relay node %s: sending a file failed: %s", node.id(), e.toString());
                ctx.request().connection().close();
            }
        });
    }

    private Peer authenticate(RoutingContext ctx) {
        String auth = ctx.request().getHeader("Authorization");
        if (auth == null || !auth.regionMatches(true, 0, "Bearer ", 0, 7)) {
            throw new Refusal(401, "missing relay token (header Authorization: Bearer <token>)", "Authorization", "required", null);
        }
        return node.authenticate(auth.substring(7))
                .orElseThrow(() -> new Refusal(401, "unknown relay token", "Authorization", "known-token", null));
    }

    private void send(RoutingContext ctx, Peer peer) {
        JsonNode body;
        try {
            body = JSON.readTree(ctx.body().buffer() == null ? new byte[0] : ctx.body().buffer().getBytes());
        } catch (Exception e) {
            throw new Refusal(400, "the body is not JSON: " + e.getClass().getSimpleName(), "body", "json", null);
        }
        List<PacketStore.Incoming> batch = node.validate(body == null ? null : body.get("packets"), peer);
        Future.fromCompletionStage(node.storeAsync(batch, peer), Vertx.currentContext()).onComplete(ar -> {
            if (ar.failed()) {
                LOG.warnf("Relay node %s: storing %d packets from %s failed (not acknowledged): %s", node.id(), batch.size(),
                        peer.id(), ar.cause().toString());
                error(ctx, new Refusal(503, "the packets could not be stored; send them again", null, null, null));
                return;
            }
            ObjectNode answer = JSON.createObjectNode();
            ArrayNode results = answer.putArray("results");
            for (SendResult r : ar.result()) {
                ObjectNode o = results.addObject().put("packetId", r.packetId()).put("status", r.status().name());
                if (r.reason() != null) {
                    o.put("reason", r.reason());
                }
            }
            ok(ctx, answer);
        });
    }

    private void inbox(RoutingContext ctx, Peer peer) {
        long cursor = number(ctx, "cursor", 0, 0, Long.MAX_VALUE);
        long wait = number(ctx, "wait", 0, 0, node.options.pollMaxWait().toSeconds());
        int limit = (int) number(ctx, "limit", 100, 1, 500);
        lastPoll.put(peer.id(), node.clock.instant());
        Poll poll = new Poll(ctx, peer, cursor, limit, Vertx.currentContext());
        Poll previous = waiting.put(peer.id(), poll);
        if (previous != null) {
            previous.context.runOnContext(v -> previous.answer(List.of())); // one poller per peer: the newer request wins
        }
        ctx.response().closeHandler(v -> poll.done = true);
        node.vertx.executeBlocking(() -> {
            node.store.acknowledge(peer.id(), cursor, node.clock.instant());
            return node.store.pending(peer.id(), cursor, limit);
        }, false).onComplete(ar -> {
            if (ar.failed()) {
                waiting.remove(peer.id(), poll);
                error(ctx, new Refusal(503, "the mailbox could not be read; poll again", null, null, null));
            } else if (!ar.result().isEmpty() || wait == 0) {
                poll.answer(ar.result());
            } else {
                poll.timer = node.vertx.setTimer(wait * 1000, t -> poll.recheck(true));
                if (poll.missed) { // a packet came while the mailbox was being read: look again now
                    poll.recheck(false);
                }
            }
        });
    }

    private static long number(RoutingContext ctx, String name, long dflt, long min, long max) {
        List<String> values = ctx.queryParam(name);
        if (values.isEmpty()) {
            return dflt;
        }
        if (values.size() > 1) {
            throw new Refusal(400, name + " given twice", name, "single", null);
        }
        try {
            long v = Long.parseLong(values.get(0));
            if (v < min || v > max) {
                throw new Refusal(400, name + " must be between " + min + " and " + max, name, "range", null);
            }
            return v;
        } catch (NumberFormatException e) {
            throw new Refusal(400, name + " must be an integer", name, "integer", null);
        }
    }

    /** A waiting long-poll. Its state is touched on its own Vert.x context only. */
    private final class Poll {
        final RoutingContext ctx;
        final Peer peer;
        final long cursor;
        final int limit;
        final Context context;
        volatile boolean done;
        long timer = -1;
        boolean checking;
        /** A wake-up before the timer was set or during a check: check (again) as soon as possible. */
        boolean missed;

        Poll(RoutingContext ctx, Peer peer, long cursor, int limit, Context context) {
            this.ctx = ctx;
            this.peer = peer;
            this.cursor = cursor;
            this.limit = limit;
            this.context = context;
        }

        void wake() {
            context.runOnContext(v -> recheck(false));
        }

        /**
         * Reads the mailbox again after a wake-up; at the end of the wait, answers empty without reading it: the peer
         * polls again at once and that poll reads the mailbox, so a packet whose wake-up was lost costs one round trip,
         * and thousands of idle pollers cost one query per wait instead of two.
         */
        void recheck(boolean timedOut) {
            if (done) {
                return;
            }
            if (timedOut) {
                answer(List.of());
                return;
            }
            if (timer < 0 || checking) {
                missed = true;
                return;
            }
            checking = true;
            missed = false;
            node.vertx.executeBlocking(() -> node.store.pending(peer.id(), cursor, limit), false).onComplete(ar -> {
                checking = false;
                if (ar.succeeded() && !ar.result().isEmpty()) {
                    answer(ar.result());
                } else if (missed) {
                    recheck(false);
                }
            });
        }

        void answer(List<PacketStore.Stored> rows) {
            if (done) {
                return;
            }
            done = true;
            if (timer >= 0) {
                node.vertx.cancelTimer(timer);
            }
            waiting.remove(peer.id(), this);
            StringBuilder sb = new StringBuilder(256 + rows.stream().mapToInt(r -> r.body().length() + 32).sum());
            sb.append("{\"id\":").append(quote(peer.id())).append(",\"node\":").append(quote(node.id())).append(",\"packets\":[");
            for (int i = 0; i < rows.size(); i++) {
                PacketStore.Stored r = rows.get(i);
                sb.append(i == 0 ? "" : ",").append("{\"seq\":").append(r.seq()).append(",\"packet\":").append(r.body()).append('}');
            }
            sb.append("]}");
            if (!ctx.response().ended() && !ctx.response().closed()) {
                ctx.response().putHeader("Content-Type", "application/json").end(sb.toString());
            }
        }
    }

    static String quote(String s) {
        try {
            return JSON.writeValueAsString(s);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    void wake(String hop) {
        Poll p = waiting.get(hop);
        if (p != null) {
            p.wake();
        }
    }

    Map<String, Instant> recentPollers() {
        return new TreeMap<>(lastPoll);
    }

    void close() {
        waiting.values().forEach(p -> p.context.runOnContext(v -> {
            if (!p.done) {
                p.done = true;
                if (!p.ctx.response().ended()) {
                    p.ctx.response().setStatusCode(503).end();
                }
            }
        }));
        waiting.clear();
    }

    private static void ok(RoutingContext ctx, JsonNode body) {
        ctx.response().putHeader("Content-Type", "application/json").end(body.toString());
    }

    static void error(RoutingContext ctx, Refusal r) {
        ObjectNode b = JSON.createObjectNode().put("status", r.status()).put("error", r.getMessage());
        if (r.field() != null) {
            b.put("field", r.field());
        }
        if (r.rule() != null) {
            b.put("rule", r.rule());
        }
        if (r.packetId() != null) {
            b.put("packetId", r.packetId());
        }
        if (!ctx.response().ended()) {
            ctx.response().setStatusCode(r.status()).putHeader("Content-Type", "application/json").end(b.toString());
        }
    }
}
