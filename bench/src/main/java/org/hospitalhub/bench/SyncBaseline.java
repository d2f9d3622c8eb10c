package org.hospitalhub.bench;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

/**
 * The synchronous baseline, the design the hub replaces: the sending system POSTs each event to the receiving
 * system's web service and waits for the answer before it sends the next; the web service writes one row per request
 * (autocommit, eventId ignored if present) and answers once it is committed. Receiver: the JDK's HTTP server;
 * client: java.net.http with a kept-alive HTTP/1.1 connection. No schema validation either (a lighter receiver than
 * the hub, so the comparison does not favour the hub).
 */
final class SyncBaseline {

    record Result(long events, double seconds, List<Double> latenciesMs) {
        double rate() {
            return events / seconds;
        }
    }

    static Result run(Pg pg, String db, String table, List<String> sample, int maxSeconds)
            throws IOException, SQLException, InterruptedException {
        ObjectMapper json = new ObjectMapper();
        try (Connection c = pg.connect(db)) {
            c.setAutoCommit(true);
            PreparedStatement insert = c.prepareStatement("INSERT INTO " + table
                    + " (event_id, event_type, source, hospital, event_key, occurred_at, payload, loaded_at) "
                    + "VALUES (?, ?, ?, ?, ?, ?::timestamptz, ?, now()) ON CONFLICT DO NOTHING");
            // answer without Nagle's delay (else every exchange waits ~40 ms for the client's delayed ACK)
            System.setProperty("sun.net.httpserver.nodelay", "true");
            HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 50);
            server.setExecutor(Executors.newSingleThreadExecutor());
            server.createContext("/events", ex -> receive(ex, json, insert));
            server.start();
            try {
                HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
                URI uri = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/events");
                List<Double> latencies = new ArrayList<>(sample.size());
                long start = System.nanoTime();
                long deadline = start + maxSeconds * 1_000_000_000L;
                long sent = 0;
                for (String event : sample) {
                    long t = System.nanoTime();
                    if (t > deadline) {
                        break;
                    }
                    HttpResponse<Void> r = client.send(HttpRequest.newBuilder(uri)
                            .header("Content-Type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofString(event)).build(), HttpResponse.BodyHandlers.discarding());
                    if (r.statusCode() != 200) {
                        throw new IOException("the synchronous receiver answered " + r.statusCode());
                    }
                    latencies.add((System.nanoTime() - t) / 1e6);
                    sent++;
                }
                return new Result(sent, (System.nanoTime() - start) / 1e9, latencies);
            } finally {
                server.stop(0);
                ((java.util.concurrent.ExecutorService) server.getExecutor()).shutdownNow();
            }
        }
    }

    private static void receive(HttpExchange ex, ObjectMapper json, PreparedStatement insert) throws IOException {
        int status;
        try (InputStream in = ex.getRequestBody()) {
            JsonNode e = json.readTree(in);
            insert.setString(1, e.get("eventId").asText());
            insert.setString(2, e.get("type").asText());
            insert.setString(3, e.get("source").asText());
            insert.setString(4, e.get("hospital").asText());
            insert.setString(5, e.hasNonNull("key") ? e.get("key").asText() : null);
            insert.setString(6, e.get("occurredAt").asText());
            insert.setString(7, e.get("payload").toString());
            insert.executeUpdate();
            status = 200;
        } catch (Exception e) {
            status = 500;
        }
        byte[] body = (status == 200 ? "ok" : "failed").getBytes(StandardCharsets.UTF_8);
        ex.sendResponseHeaders(status, body.length);
        ex.getResponseBody().write(body);
        ex.close();
    }
}
