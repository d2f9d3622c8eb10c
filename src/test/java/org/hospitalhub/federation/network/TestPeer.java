package org.hospitalhub.federation.network;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.KeyPair;
import java.security.PublicKey;
import java.time.Instant;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;

/**
 * A peer node played by the test: its own key pair, a real HTTP endpoint on 127.0.0.1 that verifies the hub's
 * transmission and origin signatures and records what it receives (or answers 503 while "offline"), and a client that
 * signs messages the way a node does, or wrongly on purpose.
 */
final class TestPeer implements AutoCloseable {

    static final ObjectMapper JSON = new ObjectMapper();
    /** Public keys of every node the test knows (the hub under test and the test's peers), by node id. */
    static final java.util.Map<String, PublicKey> KNOWN = new java.util.concurrent.ConcurrentHashMap<>();

    final String nodeId;
    final KeyPair keys = NodeKeys.generate();
    final int port;
    final List<JsonNode> received = new CopyOnWriteArrayList<>();
    final List<String> refused = new CopyOnWriteArrayList<>();
    /** Every transmission's body, as received (a JSON array when the hub sent several messages at once). */
    final List<String> transmissions = new CopyOnWriteArrayList<>();
    volatile boolean offline;
    /** Answer 400 to a transmission of several messages, as a node of an older version would. */
    volatile boolean refuseBatches;
    volatile PublicKey hubKey;
    /**
     * When set: the next transmission carrying a message of that type (the first one only) is answered once the latch
     * is counted down (at most 20 s).
     */
    volatile Hold hold;

    record Hold(String type, CountDownLatch release, java.util.concurrent.atomic.AtomicBoolean taken) {
        Hold(String type, CountDownLatch release) {
            this(type, release, new java.util.concurrent.atomic.AtomicBoolean());
        }
    }
    private final HttpServer server;

    TestPeer(String nodeId, int port) throws IOException {
        this.nodeId = nodeId;
        this.port = port;
        KNOWN.put(nodeId, keys.getPublic());
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext(Transmission.PATH, ex -> {
            String body = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
            transmissions.add(body);
            int status = 200;
            String answer;
            String node = ex.getRequestHeaders().getFirst(Transmission.NODE);
            String text = Transmission.signedText(node, ex.getRequestHeaders().getFirst(Transmission.NONCE),
                    ex.getRequestHeaders().getFirst(Transmission.TIMESTAMP), body);
            boolean batch = body.startsWith("[");
            if (offline) {
                status = 503;
                answer = "{\"status\":503}";
            } else if (batch && refuseBatches) {
                status = 400; // a node of a version that takes one message per transmission
                answer = "{\"status\":400,\"error\":\"not a message\"}";
            } else if (hubKey == null || !NodeKeys.verify(hubKey, text, ex.getRequestHeaders().getFirst(Transmission.SIGNATURE))) {
                refused.add(body);
                status = 401;
                answer = "{\"status\":401}";
            } else if (batch) {
                ArrayNode results = JSON.createArrayNode();
                for (JsonNode wire : JSON.readTree(body)) {
                    JsonNode envelope = accept(wire, wire.toString());
                    results.addObject().put("status", envelope == null ? 401 : 200).put("ack", envelope == null ? null
                            : envelope.path("id").asText()).put("duplicate", false);
                    if (envelope == null) {
                        break;
                    }
                }
                answer = JSON.createObjectNode().put("status", 200).set("results", results).toString();
            } else {
                JsonNode envelope = accept(JSON.readTree(body), body);
                status = envelope == null ? 401 : 200;
                answer = "{\"status\":" + status + "}";
            }
            Hold held = hold;
            if (held != null && status == 200 && body.contains("\\\"type\\\":\\\"" + held.type() + "\\\"")
                    && held.taken().compareAndSet(false, true)) {
                try {
                    held.release().await(20, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            byte[] bytes = answer.getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(status, bytes.length);
            ex.getResponseBody().write(bytes);
            ex.close();
        });
        // a transmission at a time per sender, but a held one must not stop the next (see hold)
        server.setExecutor(Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "test-peer-" + nodeId);
            t.setDaemon(true);
            return t;
        }));
        server.start();
    }

    /** A message of a verified transmission: recorded if its origin's signature verifies (its envelope), else refused (null). */
    private JsonNode accept(JsonNode wire, String text) throws IOException {
        String envelope = wire.path("envelope").asText();
        PublicKey originKey = KNOWN.get(JSON.readTree(envelope).path("origin").asText());
        if (originKey == null || !NodeKeys.verify(originKey, Messages.SIGNED_PREFIX + envelope, wire.path("signature").asText())) {
            refused.add(text);
            return null;
        }
        JsonNode e = JSON.readTree(envelope);
        received.add(e);
        return e;
    }

    String baseUrl() {
        return "http://127.0.0.1:" + port;
    }

    String publicKey() {
        return NodeKeys.encode(keys.getPublic());
    }

    List<JsonNode> received(String type) {
        return received.stream().filter(m -> m.path("type").asText().equals(type)).toList();
    }

    /** A message from this peer, signed with {@code key} (this peer's own unless forging). */
    String seal(KeyPair key, String type, String to, String projectId, ObjectNode payload) {
        return seal(key, UUID.randomUUID().toString(), type, to, projectId, payload);
    }

    String seal(KeyPair key, String id, String type, String to, String projectId, ObjectNode payload) {
        ObjectNode env = JSON.createObjectNode();
        env.put("id", id);
        env.put("type", type);
        env.put("origin", nodeId);
        env.put("to", to);
        env.put("projectId", projectId);
        env.put("createdAt", Instant.now().toString());
        env.set("payload", payload);
        String envelope = env.toString();
        ObjectNode wire = JSON.createObjectNode();
        wire.put("envelope", envelope);
        wire.put("signature", NodeKeys.sign(key.getPrivate(), Messages.SIGNED_PREFIX + envelope));
        return wire.toString();
    }

    /** One transmission of {@code body} to the hub at {@code port}, signed by {@code signer} with the given nonce/time. */
    static HttpResponse<String> transmit(int port, String node, KeyPair signer, String nonce, long timestamp, String body,
            String signedBody) throws IOException, InterruptedException {
        String ts = String.valueOf(timestamp);
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + Transmission.PATH))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        if (node != null) {
            b.header(Transmission.NODE, node).header(Transmission.NONCE, nonce).header(Transmission.TIMESTAMP, ts)
                    .header(Transmission.SIGNATURE, NodeKeys.sign(signer.getPrivate(), Transmission.signedText(node, nonce, ts, signedBody)));
        }
        return HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build().send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    HttpResponse<String> send(int port, String body) throws IOException, InterruptedException {
        return transmit(port, nodeId, keys, UUID.randomUUID().toString(), System.currentTimeMillis(), body, body);
    }

    static String checksum(JsonNode definition, JsonNode dependsOn, String kind) {
        return NodeKeys.sha256Hex(definition.toString() + "\n" + dependsOn.toString() + "\n" + kind);
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
