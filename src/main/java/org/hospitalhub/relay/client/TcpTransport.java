package org.hospitalhub.relay.client;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * TCP: one persistent connection, length-prefixed JSON frames ({@link Frames}). The client PINGs every heartbeat; a
 * connection silent for three heartbeats is dead and is replaced. The server pushes packets (DELIVER) and the
 * client acknowledges what it handled (RECEIVED with its cursor); a new connection says HELLO with the cursor, and
 * the server resends from there.
 */
final class TcpTransport implements RelayClient.Transport {

    private final RelayClient client;
    private final RelayClient.Settings s;
    private final Thread reader;
    private final Thread dispatcher;
    private final Thread heartbeat;
    private final BlockingQueue<long[]> receivedSeqs = new LinkedBlockingQueue<>();
    private final Map<Long, Packet> receivedPackets = new ConcurrentHashMap<>();
    private final Map<Long, CompletableFuture<JsonNode>> pending = new ConcurrentHashMap<>();
    private final AtomicLong refs = new AtomicLong();
    private volatile Connection current;

    private record Connection(Socket socket, DataInputStream in, DataOutputStream out) {
    }

    TcpTransport(RelayClient client) {
        this.client = client;
        this.s = client.settings;
        this.reader = daemon(this::readLoop, "relay-tcp-" + s.name);
        this.dispatcher = daemon(this::dispatchLoop, "relay-receive-" + s.name);
        this.heartbeat = daemon(this::heartbeatLoop, "relay-heartbeat-" + s.name);
    }

    private static Thread daemon(Runnable r, String name) {
        Thread t = new Thread(r, name);
        t.setDaemon(true);
        return t;
    }

    @Override
    public void start() {
        reader.start();
        dispatcher.start();
        heartbeat.start();
    }

    @Override
    public boolean connected() {
        return current != null;
    }

    @Override
    public List<SendResult> send(List<JsonNode> packets) throws IOException {
        Connection c = current;
        if (c == null) {
            throw new RelayClient.NotSentException("not connected", null);
        }
        long ref = refs.incrementAndGet();
        ObjectNode f = Frames.frame("SEND").put("ref", ref);
        ArrayNode arr = f.putArray("packets");
        arr.addAll(packets);
        CompletableFuture<JsonNode> answer = new CompletableFuture<>();
        pending.put(ref, answer);
        byte[] frame = Frames.bytes(f);
        if (frame.length > Frames.MAX_FRAME) {
            // the server would close the connection on it, on every attempt: refuse it here, as an HTTP server does (413)
            throw new RelayRejectedException(413, "a request of " + packets.size() + " packets is " + frame.length
                    + " bytes, more than a frame may carry (" + Frames.MAX_FRAME + "): send fewer or smaller packets at once",
                    "packets", "max-frame");
        }
        JsonNode a;
        try {
            Frames.write(c.out, frame);
            a = answer.get(s.requestTimeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } catch (ExecutionException e) {
            throw e.getCause() instanceof IOException io ? io : new IOException(e.getCause());
        } catch (TimeoutException e) {
            drop(c, new IOException("no ACK within " + s.requestTimeout));
            throw new IOException("no ACK within " + s.requestTimeout, e);
        } catch (IOException e) {
            drop(c, e);
            throw e;
        } finally {
            pending.remove(ref);
        }
        if ("NACK".equals(a.path("type").asText())) {
            throw new RelayRejectedException(a.path("status").asInt(400), a.path("error").asText(),
                    a.path("field").asText(null), a.path("rule").asText(null));
        }
        List<SendResult> results = new ArrayList<>();
        for (JsonNode r : a.path("results")) {
            results.add(new SendResult(r.path("packetId").asText(), SendResult.Status.valueOf(r.path("status").asText()),
                    r.hasNonNull("reason") ? r.get("reason").asText() : null));
        }
        return results;
    }

    /** Connects, says HELLO, then reads frames until the connection dies; then again, with backoff. */
    private void readLoop() {
        int failures = 0;
        while (client.running) {
            client.state(RelayClient.State.CONNECTING);
            Connection c = null;
            try {
                Socket socket = new Socket();
                socket.setTcpNoDelay(true);
                socket.setKeepAlive(true);
                socket.connect(new InetSocketAddress(s.tcpHost, s.tcpPort), (int) s.requestTimeout.toMillis());
                socket.setSoTimeout((int) s.heartbeat.toMillis() * 3);
                c = new Connection(socket, new DataInputStream(new BufferedInputStream(socket.getInputStream())),
                        new DataOutputStream(new BufferedOutputStream(socket.getOutputStream())));
                Frames.write(c.out, Frames.frame("HELLO").put("token", s.token).put("cursor", client.cursor()));
                JsonNode welcome = Frames.read(c.in);
                if (!"WELCOME".equals(welcome.path("type").asText())) {
                    RelayRejectedException r = new RelayRejectedException(welcome.path("status").asInt(401),
                            welcome.path("error").asText("refused"), null, null);
                    s.onError.accept(r);
                    socket.close();
                    RelayClient.pause(client.backoff(failures++ + 4));
                    continue;
                }
                client.authenticated(welcome.path("id").asText());
                current = c;
                failures = 0;
                client.state(RelayClient.State.CONNECTED);
                while (client.running) {
                    JsonNode f = Frames.read(c.in);
                    switch (f.path("type").asText()) {
                        case "ACK", "NACK" -> {
                            CompletableFuture<JsonNode> p = pending.get(f.path("ref").asLong());
                            if (p != null) {
                                p.complete(f);
                            }
                        }
                        case "DELIVER" -> {
                            for (JsonNode e : f.path("packets")) {
                                long seq = e.path("seq").asLong();
                                receivedPackets.put(seq, Packet.fromJson(e.path("packet")));
                                receivedSeqs.add(new long[] {seq});
                            }
                        }
                        case "PING" -> Frames.write(c.out, Frames.frame("PONG"));
                        default -> {
                            // PONG and anything newer: the read itself proves the link is alive
                        }
                    }
                }
            } catch (SocketTimeoutException e) {
                drop(c, new IOException("no frame for three heartbeats: link dead", e));
            } catch (IOException | RuntimeException e) {
                drop(c, e);
            }
            if (client.running) {
                RelayClient.pause(client.backoff(failures++));
            }
        }
    }

    private void drop(Connection c, Exception why) {
        if (c == null) {
            s.onError.accept(why);
            return;
        }
        try {
            c.socket.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        if (current == c) {
            current = null;
            client.state(RelayClient.State.DISCONNECTED);
            s.onError.accept(why);
        }
        IOException io = why instanceof IOException e ? e : new IOException(why);
        pending.values().forEach(p -> p.completeExceptionally(io));
    }

    /**
     * Hands pushed packets to the handler in order (all that are waiting at once, up to 500, for a batch handler),
     * and acknowledges with the cursor once the queue is drained.
     */
    private void dispatchLoop() {
        int failures = 0;
        long acked = -1;
        // packets whose handler failed: tried again before anything newer (kept here, not put back in the queue, where
        // the reader thread may have appended later packets meanwhile)
        List<long[]> held = new ArrayList<>();
        while (client.running) {
            try {
                List<long[]> taken = new ArrayList<>(held);
                held.clear();
                if (taken.isEmpty()) {
                    long[] next = receivedSeqs.poll(s.heartbeat.toMillis(), TimeUnit.MILLISECONDS);
                    if (next != null) {
                        taken.add(next);
                    }
                }
                if (!taken.isEmpty()) {
                    if (s.batchHandler != null && taken.size() < 500) {
                        receivedSeqs.drainTo(taken, 500 - taken.size());
                    }
                    long[] seqs = new long[taken.size()];
                    List<Packet> packets = new ArrayList<>();
                    for (long[] t : taken) {
                        Packet p = receivedPackets.get(t[0]);
                        if (p != null) {
                            seqs[packets.size()] = t[0];
                            packets.add(p);
                        }
                    }
                    try {
                        client.deliver(java.util.Arrays.copyOf(seqs, packets.size()), packets);
                        failures = 0;
                    } catch (Exception e) {
                        s.onError.accept(e);
                        // the handler failed: hold everything from the first packet not handled, try again after a pause
                        long handled = client.cursor();
                        for (long[] t : taken) {
                            if (t[0] > handled) {
                                held.add(t);
                            } else {
                                receivedPackets.remove(t[0]);
                            }
                        }
                        RelayClient.pause(client.backoff(failures++));
                        continue;
                    }
                    taken.forEach(t -> receivedPackets.remove(t[0]));
                }
                long cursor = client.cursor();
                Connection c = current;
                if (c != null && cursor != acked && (receivedSeqs.isEmpty() || cursor - acked >= 50)) {
                    Frames.write(c.out, Frames.frame("RECEIVED").put("cursor", cursor));
                    acked = cursor;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (IOException e) {
                acked = -1; // said again on the next connection (its HELLO carries the cursor anyway)
            }
        }
    }

    private void heartbeatLoop() {
        while (client.running) {
            RelayClient.pause(s.heartbeat);
            Connection c = current;
            if (c != null) {
                try {
                    Frames.write(c.out, Frames.frame("PING"));
                } catch (IOException e) {
                    drop(c, e);
                }
            }
        }
    }

    @Override
    public void close() {
        Connection c = current;
        current = null;
        if (c != null) {
            try {
                c.socket.close();
            } catch (IOException ignored) {
                // closing
            }
        }
        reader.interrupt();
        dispatcher.interrupt();
        heartbeat.interrupt();
    }
}
