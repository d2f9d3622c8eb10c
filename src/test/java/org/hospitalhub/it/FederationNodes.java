package org.hospitalhub.it;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.Signature;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * A research network of packaged hubs for integration tests: each node its own JVM (quarkus-run.jar), its own
 * PostgreSQL database, its own Ed25519 key pair made for the run, all registered with each other, talking HTTP on
 * 127.0.0.1. Ports from HUB_FED_IT_PORT (consecutive) or free ones.
 */
final class FederationNodes implements AutoCloseable {

    static final String OPS_KEY = "it-fed-ops-key";
    static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1) // as in HubProcess
            .connectTimeout(Duration.ofSeconds(3)).build();

    /** One node: its process, database, port and keys. */
    static final class Node {
        final String id;
        final int port;
        final ItDatabase db;
        final KeyPair keys;
        HubProcess process;

        Node(String id, int port, ItDatabase db, KeyPair keys) {
            this.id = id;
            this.port = port;
            this.db = db;
            this.keys = keys;
        }

        String url() {
            return "http://127.0.0.1:" + port;
        }

        String publicKey() {
            return Base64.getEncoder().encodeToString(keys.getPublic().getEncoded());
        }

        HttpResponse<String> call(String method, String path, String body) throws IOException, InterruptedException {
            HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url() + path)).timeout(Duration.ofSeconds(30))
                    .header("X-Api-Key", OPS_KEY).header("Content-Type", "application/json");
            b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
            return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
        }

        JsonNode get(String path) throws IOException, InterruptedException {
            HttpResponse<String> r = call("GET", path, null);
            if (r.statusCode() != 200) {
                throw new IllegalStateException("GET " + path + " on " + id + ": " + r.statusCode() + " " + r.body());
            }
            return JSON.readTree(r.body());
        }

        JsonNode post(String path, String body, int expected) throws IOException, InterruptedException {
            HttpResponse<String> r = call("POST", path, body);
            if (r.statusCode() != expected) {
                throw new IllegalStateException("POST " + path + " on " + id + ": " + r.statusCode() + " " + r.body());
            }
            return r.body().isBlank() ? null : JSON.readTree(r.body());
        }

        /** A transmission to this node's message endpoint, signed by {@code signer} as node {@code from}. */
        HttpResponse<String> transmit(String from, PrivateKey signer, String nonce, long timestamp, String body)
                throws Exception {
            String ts = String.valueOf(timestamp);
            String text = "hub-federation-transmission-v1\n" + from + "\n" + nonce + "\n" + ts + "\n" + sha256Hex(body);
            return HTTP.send(HttpRequest.newBuilder(URI.create(url() + "/federation/v1/messages"))
                    .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json")
                    .header("X-Hub-Node", from).header("X-Hub-Nonce", nonce).header("X-Hub-Timestamp", ts)
                    .header("X-Hub-Signature", sign(signer, text)).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                    HttpResponse.BodyHandlers.ofString());
        }

        HttpResponse<String> transmit(Node from, String body) throws Exception {
            return transmit(from.id, from.keys.getPrivate(), UUID.randomUUID().toString(), System.currentTimeMillis(), body);
        }
    }

    final Map<String, Node> nodes = new LinkedHashMap<>();
    private final Path work;

    FederationNodes(String name, List<String> ids) throws Exception {
        work = Files.createDirectories(Path.of("target", name).toAbsolutePath());
        Files.createDirectories(work.resolve("routes"));
        String base = System.getenv("HUB_FED_IT_PORT");
        int i = 0;
        for (String id : ids) {
            int port = base == null ? HubProcess.freePort() : Integer.parseInt(base) + i;
            KeyPairGenerator g = KeyPairGenerator.getInstance("Ed25519");
            nodes.put(id, new Node(id, port, ItDatabase.fresh("fed_" + id), g.generateKeyPair()));
            i++;
        }
    }

    Node node(String id) {
        return nodes.get(id);
    }

    /**
     * Creates the processes: {@code autoAccept} maps a node to the initiators it accepts automatically; {@code relay}
     * is the central hub node (or null); {@code extraEnv} per node (e.g. faster retries).
     */
    void create(Map<String, List<String>> autoAccept, String relay, Map<String, Map<String, String>> extraEnv) {
        for (Node n : nodes.values()) {
            List<String> peers = new ArrayList<>();
            for (Node p : nodes.values()) {
                if (p != n) {
                    boolean auto = autoAccept.getOrDefault(n.id, List.of()).contains(p.id);
                    peers.add(p.id + "," + p.url() + "," + p.publicKey() + (auto ? ",auto-accept" : ""));
                }
            }
            Map<String, String> env = new HashMap<>();
            env.put("QUARKUS_PROFILE", "postgres");
            env.put("HUB_DB_URL", n.db.url);
            env.put("HUB_DB_USERNAME", "postgres");
            env.put("HUB_ROUTES_DIR", work.resolve("routes").toString());
            env.put("HUB_AUTH_CLIENTS", "ops:operator:" + OPS_KEY);
            env.put("HUB_LEASE_TTL", "3s");
            env.put("HUB_FEDERATION_NODE_ID", n.id);
            env.put("HUB_FEDERATION_PRIVATE_KEY", Base64.getEncoder().encodeToString(n.keys.getPrivate().getEncoded()));
            env.put("HUB_FEDERATION_PUBLIC_KEY", n.publicKey());
            env.put("HUB_FEDERATION_PEERS", String.join(";", peers));
            if (relay != null) {
                env.put("HUB_FEDERATION_RELAY_NODE", relay);
            }
            env.put("HUB_FEDERATION_OUTBOX_POLL_PERIOD", "100");
            env.put("HUB_FEDERATION_OUTBOX_BACKOFF_INITIAL", "200ms");
            env.put("HUB_FEDERATION_OUTBOX_BACKOFF_MAX", "1s");
            env.put("HUB_FEDERATION_STEPS_POLL_PERIOD", "100");
            env.put("HUB_FEDERATION_ENABLED", "true"); // the data side (StudyExecutor) on this node
            env.put("HUB_FEDERATION_PSEUDONYM_KEY", "it-only-pseudonym-key-" + n.id);
            env.putAll(extraEnv.getOrDefault(n.id, Map.of()));
            n.process = new HubProcess(n.port, env, work.resolve(n.id + ".log"));
        }
    }

    /** Starts the given nodes in parallel and waits until each is ready. */
    void start(String... ids) throws Exception {
        List<Thread> threads = new ArrayList<>();
        List<Exception> failures = new java.util.concurrent.CopyOnWriteArrayList<>();
        for (String id : ids) {
            Thread t = new Thread(() -> {
                try {
                    nodes.get(id).process.start();
                } catch (Exception e) {
                    failures.add(e);
                }
            });
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) {
            t.join();
        }
        if (!failures.isEmpty()) {
            throw failures.get(0);
        }
    }

    @Override
    public void close() throws Exception {
        for (Node n : nodes.values()) {
            if (n.process != null && n.process.alive()) {
                n.process.kill();
            }
        }
    }

    static String sign(PrivateKey key, String text) throws Exception {
        Signature s = Signature.getInstance("Ed25519");
        s.initSign(key);
        s.update(text.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        return Base64.getEncoder().encodeToString(s.sign());
    }

    static String sha256Hex(String s) throws Exception {
        return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                .digest(s.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
    }
}
