package org.hospitalhub.relay.client;

import java.io.IOException;
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import java.util.function.LongConsumer;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.util.RawValue;

/**
 * A client of a relay node (a hospital's system, or a child relay node's link to its parent). It connects over HTTP
 * (sends by POST, receives by long-polling GET with a cursor) or TCP (length-prefixed JSON frames, heartbeats),
 * authenticates with its token, sends asynchronously (the future completes when the server has stored the packet),
 * and hands received packets to a {@link PacketHandler} on its own thread, in order. When the link drops it
 * reconnects with backoff and resumes from its cursor; packets sent meanwhile wait in memory until the server acks
 * them or {@code sendTimeout} passes. Depends on the JDK and Jackson only.
 *
 * <pre>
 * RelayClient c = RelayClient.builder().http(URI.create("https://county-1.example/")).token(token)
 *         .onPacket(p -&gt; System.out.println(p.command())).build();
 * c.start();
 * c.send(Packet.create("clinic-7@county-1", "dr-li@city-a", "consult.request", params, 3600));
 * </pre>
 */
public final class RelayClient implements AutoCloseable {

    /** The link state, for {@link Builder#onState}. */
    public enum State {
        CONNECTING,
        CONNECTED,
        DISCONNECTED,
        CLOSED
    }

    final Settings settings;
    private final Transport transport;
    private final BlockingQueue<Outgoing> outgoing = new LinkedBlockingQueue<>();
    private final Thread sender;
    private volatile long cursor;
    volatile boolean running;
    private volatile String address;

    private RelayClient(Settings settings) {
        this.settings = settings;
        this.cursor = settings.cursor;
        this.transport = settings.tcpHost != null ? new TcpTransport(this) : new HttpTransport(this);
        this.sender = new Thread(this::sendLoop, "relay-send-" + settings.name);
        this.sender.setDaemon(true);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Connects (in the background: a server that is down is retried until it answers) and starts receiving. */
    public RelayClient start() {
        running = true;
        transport.start();
        sender.start();
        return this;
    }

    /** Sends one packet; completes when the server stored it, exceptionally if refused or not acked in time. */
    public CompletableFuture<SendResult> send(Packet packet) {
        return sendAll(List.of(packet)).thenApply(r -> r.get(0));
    }

    /** Sends packets in this order, as one request; completes when the server stored all of them. */
    public CompletableFuture<List<SendResult>> sendAll(List<Packet> packets) {
        return enqueue(packets.stream().<JsonNode>map(Packet::toJson).toList());
    }

    /**
     * Sends packets given as JSON text, one packet object each (for instance as a relay node stored them), in this order
     * and unchanged, as one request; completes when the server stored all of them. Each text is only scanned here, to
     * be sure it is exactly one JSON object (anything else would break the request it is written into: refused at once
     * with {@link RelayRejectedException} 400, rule {@code json}); no tree is built and nothing is written again. The
     * server checks each packet as it checks any other, and refuses the request if one is not a valid packet.
     */
    public CompletableFuture<List<SendResult>> sendJson(List<String> packets) {
        List<JsonNode> raw = new ArrayList<>(packets.size());
        for (int i = 0; i < packets.size(); i++) {
            String text = packets.get(i);
            if (!isOneObject(text)) {
                return CompletableFuture.failedFuture(new RelayRejectedException(400, "packet " + i + " of the request is not "
                        + "one JSON object", "packets[" + i + "]", "json"));
            }
            raw.add(JsonNodeFactory.instance.rawValueNode(new RawValue(text)));
        }
        return enqueue(raw);
    }

    /** Whether {@code text} is exactly one JSON object, well formed, and nothing after it (a token scan, no tree). */
    static boolean isOneObject(String text) {
        if (text == null) {
            return false;
        }
        try (JsonParser p = Frames.JSON.getFactory().createParser(text)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return false;
            }
            p.skipChildren();
            return p.nextToken() == null;
        } catch (IOException malformed) {
            return false;
        }
    }

    private CompletableFuture<List<SendResult>> enqueue(List<JsonNode> packets) {
        CompletableFuture<List<SendResult>> f = new CompletableFuture<>();
        if (!running) {
            f.completeExceptionally(new IllegalStateException("the relay client is not started or is closed"));
            return f;
        }
        if (packets.isEmpty()) {
            f.complete(List.of());
            return f;
        }
        outgoing.add(new Outgoing(packets, f, System.nanoTime() + settings.sendTimeout.toNanos()));
        return f;
    }

    /** The address the server authenticated this client as ({@code name@node}, or a child node's id); null before. */
    public String address() {
        return address;
    }

    /** The hop sequence of the last packet handled (what a restart would resume after). */
    public long cursor() {
        return cursor;
    }

    public boolean connected() {
        return transport.connected();
    }

    @Override
    public void close() {
        running = false;
        sender.interrupt();
        transport.close();
        Outgoing o;
        while ((o = outgoing.poll()) != null) {
            o.future.completeExceptionally(new IllegalStateException("the relay client was closed before the server acknowledged"));
        }
        settings.onState.accept(State.CLOSED);
    }

    // ---- used by the transports ----------------------------------------------------------------------------------

    void authenticated(String id) {
        this.address = id;
    }

    /** Hands one received packet to the handler unless it was handled already; throws if the handler failed. */
    void deliver(long seq, Packet p) throws Exception {
        deliver(new long[] {seq}, List.of(p));
    }

    /**
     * Hands received packets (ascending sequences) to the handler, skipping those handled already (resent after a
     * reconnect); throws if the handler failed. A {@link PacketHandler} gets them one by one (the cursor moves past
     * each it handled); a {@link BatchHandler} gets them all at once (the cursor moves past all or none).
     */
    void deliver(long[] seqs, List<Packet> packets) throws Exception {
        List<Packet> fresh = new ArrayList<>();
        long last = cursor;
        for (int i = 0; i < seqs.length; i++) {
            if (seqs[i] > last) {
                if (settings.batchHandler == null) {
                    settings.handler.onPacket(packets.get(i));
                    cursor = seqs[i];
                    settings.onCursor.accept(seqs[i]);
                } else {
                    fresh.add(packets.get(i));
                }
                last = seqs[i];
            }
        }
        if (!fresh.isEmpty()) {
            settings.batchHandler.onPackets(List.copyOf(fresh));
            cursor = last;
            settings.onCursor.accept(last);
        }
    }

    void state(State s) {
        if (s == State.CONNECTED) {
            synchronized (linkUp) {
                linkUp.notifyAll(); // a sender waiting out its backoff goes at once
            }
        }
        settings.onState.accept(s);
    }

    private final Object linkUp = new Object();

    private void waitForLink(Duration max) {
        synchronized (linkUp) {
            try {
                linkUp.wait(Math.max(1, max.toMillis()));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    Duration backoff(int failures) {
        long base = settings.reconnectMin.toMillis();
        long max = settings.reconnectMax.toMillis();
        long d = Math.min(max, base * (1L << Math.min(failures, 20)));
        // jitter: many clients of one restarted server do not all come back in the same millisecond
        return Duration.ofMillis(d / 2 + (long) (Math.random() * (d / 2 + 1)));
    }

    static void pause(Duration d) {
        try {
            Thread.sleep(d.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    // ---- sending ---------------------------------------------------------------------------------------------------

    /** Packets as the transports write them: their JSON trees, or their text as given (raw value nodes). */
    private static final class Outgoing {
        final List<JsonNode> packets;
        final CompletableFuture<List<SendResult>> future;
        final long deadline;
        /** An earlier attempt may have reached the server (sent, but its answer was lost): see {@link #complete}. */
        boolean triedBefore;

        Outgoing(List<JsonNode> packets, CompletableFuture<List<SendResult>> future, long deadline) {
            this.packets = packets;
            this.future = future;
            this.deadline = deadline;
        }

        /**
         * Completes the send with the server's answers. After an attempt whose answer was lost, the server answers
         * DUPLICATE for what that attempt stored: for the caller, who sent once, it is STORED.
         */
        void complete(List<SendResult> answers) {
            if (!triedBefore) {
                future.complete(answers);
                return;
            }
            List<SendResult> mine = new ArrayList<>(answers.size());
            for (SendResult r : answers) {
                mine.add(r.status() == SendResult.Status.DUPLICATE
                        ? new SendResult(r.packetId(), SendResult.Status.STORED, STORED_BY_EARLIER_ATTEMPT)
                        : r);
            }
            future.complete(mine);
        }
    }

    static final String STORED_BY_EARLIER_ATTEMPT = "stored by an earlier attempt of this send whose acknowledgement was lost";

    /**
     * Thrown by a transport when the request certainly did not reach the server (no connection, connection
     * refused), as opposed to an IOException after it was written, whose packets may have been stored.
     */
    static final class NotSentException extends IOException {
        NotSentException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** One thread sends, so packets reach the server in the order they were sent. */
    private void sendLoop() {
        int failures = 0;
        while (running) {
            List<Outgoing> batch = new ArrayList<>();
            try {
                Outgoing first = outgoing.poll(1, TimeUnit.SECONDS);
                if (first == null) {
                    continue;
                }
                batch.add(first);
                int n = first.packets.size();
                Outgoing next;
                while (n < settings.maxBatch && (next = outgoing.peek()) != null && n + next.packets.size() <= settings.maxBatch) {
                    batch.add(outgoing.poll());
                    n += next.packets.size();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            while (running && !batch.isEmpty()) {
                long now = System.nanoTime();
                batch.removeIf(o -> {
                    if (now - o.deadline > 0) {
                        o.future.completeExceptionally(new TimeoutException("not acknowledged by the relay within " + settings.sendTimeout));
                        return true;
                    }
                    return false;
                });
                if (batch.isEmpty()) {
                    break;
                }
                try {
                    send(batch);
                    failures = 0;
                    batch.clear();
                } catch (IOException e) {
                    // link down: the same packets go again after the pause or the reconnect (the server drops what it
                    // already stored, and answers DUPLICATE for it)
                    if (!(e instanceof NotSentException)) {
                        batch.forEach(o -> o.triedBefore = true);
                    }
                    waitForLink(backoff(failures++));
                    if (Thread.currentThread().isInterrupted()) {
                        return;
                    }
                }
            }
        }
    }

    private void send(List<Outgoing> batch) throws IOException {
        List<JsonNode> all = new ArrayList<>();
        batch.forEach(o -> all.addAll(o.packets));
        List<SendResult> results;
        try {
            results = transport.send(all);
        } catch (RelayRejectedException e) {
            if (batch.size() == 1) {
                batch.get(0).future.completeExceptionally(e);
                return;
            }
            // refused as a whole: find out whose send it was, one by one
            for (Outgoing o : batch) {
                try {
                    o.complete(transport.send(o.packets));
                } catch (RelayRejectedException one) {
                    o.future.completeExceptionally(one);
                }
            }
            return;
        }
        int i = 0;
        for (Outgoing o : batch) {
            o.complete(results.subList(i, i + o.packets.size()));
            i += o.packets.size();
        }
    }

    interface Transport {
        void start();

        /** Sends and waits for the server's ack; IOException when the link is down (the caller retries). */
        List<SendResult> send(List<JsonNode> packets) throws IOException;

        boolean connected();

        void close();
    }

    static final class Settings {
        URI httpBase;
        String tcpHost;
        int tcpPort;
        String token;
        PacketHandler handler;
        BatchHandler batchHandler;
        long cursor;
        LongConsumer onCursor = c -> {
        };
        Consumer<State> onState = s -> {
        };
        Consumer<Throwable> onError = e -> {
        };
        Duration heartbeat = Duration.ofSeconds(10);
        Duration pollWait = Duration.ofSeconds(20);
        Duration requestTimeout = Duration.ofSeconds(15);
        Duration reconnectMin = Duration.ofMillis(200);
        Duration reconnectMax = Duration.ofSeconds(15);
        Duration sendTimeout = Duration.ofMinutes(5);
        int maxBatch = 100;
        String name = "client";
    }

    public static final class Builder {
        private final Settings s = new Settings();

        /** Talk HTTP to the node at this base address (the relay endpoints are under {@code /relay/v1}). */
        public Builder http(URI base) {
            s.httpBase = base;
            s.tcpHost = null;
            return this;
        }

        /** Talk TCP to the node's relay port. */
        public Builder tcp(String host, int port) {
            s.tcpHost = host;
            s.tcpPort = port;
            s.httpBase = null;
            return this;
        }

        /** The token the node issued to this client (or child node). */
        public Builder token(String token) {
            s.token = token;
            return this;
        }

        /** Receive packets one at a time (or use {@link #onPackets}). */
        public Builder onPacket(PacketHandler handler) {
            s.handler = handler;
            s.batchHandler = null;
            return this;
        }

        /** Receive packets in batches: everything that arrived together, acknowledged together (or use {@link #onPacket}). */
        public Builder onPackets(BatchHandler handler) {
            s.batchHandler = handler;
            s.handler = null;
            return this;
        }

        /** Resume after this hop sequence (e.g. saved from {@link #onCursor} before a restart). */
        public Builder cursor(long cursor) {
            s.cursor = cursor;
            return this;
        }

        /** Called on the receive thread after each packet handled, with its sequence: persist it to resume there. */
        public Builder onCursor(LongConsumer listener) {
            s.onCursor = listener;
            return this;
        }

        public Builder onState(Consumer<State> listener) {
            s.onState = listener;
            return this;
        }

        /** Failures of the link (refused credentials, unreachable server), for logging. */
        public Builder onError(Consumer<Throwable> listener) {
            s.onError = listener;
            return this;
        }

        /** TCP: a PING this often; no frame for three times this long means the link is dead. */
        public Builder heartbeat(Duration d) {
            s.heartbeat = d;
            return this;
        }

        /** HTTP: how long one GET waits for packets before returning empty. */
        public Builder pollWait(Duration d) {
            s.pollWait = d;
            return this;
        }

        /** How long a request (a send, the HELLO) may take before the link counts as down. */
        public Builder requestTimeout(Duration d) {
            s.requestTimeout = d;
            return this;
        }

        public Builder reconnect(Duration min, Duration max) {
            s.reconnectMin = min;
            s.reconnectMax = max;
            return this;
        }

        /** A send not acknowledged within this time fails with a TimeoutException. */
        public Builder sendTimeout(Duration d) {
            s.sendTimeout = d;
            return this;
        }

        /** Name of the client's threads. */
        public Builder name(String name) {
            s.name = name;
            return this;
        }

        public RelayClient build() {
            if (s.httpBase == null && s.tcpHost == null) {
                throw new IllegalStateException("choose a transport: http(uri) or tcp(host, port)");
            }
            Objects.requireNonNull(s.token, "token");
            if (s.handler == null && s.batchHandler == null) {
                throw new NullPointerException("onPacket or onPackets: a handler for received packets");
            }
            return new RelayClient(s);
        }
    }
}
