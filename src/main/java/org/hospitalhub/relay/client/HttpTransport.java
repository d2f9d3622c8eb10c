package org.hospitalhub.relay.client;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * HTTP: POST {@code /relay/v1/packets} to send, long-poll GET {@code /relay/v1/inbox?cursor=N&wait=S} to receive
 * (the cursor acknowledges everything up to N). Works through proxies and firewalls that only let HTTP out.
 */
final class HttpTransport implements RelayClient.Transport {

    private final RelayClient client;
    private final RelayClient.Settings s;
    private final HttpClient http;
    private final URI base;
    private final Thread poller;
    private volatile boolean connected;

    HttpTransport(RelayClient client) {
        this.client = client;
        this.s = client.settings;
        String b = s.httpBase.toString();
        this.base = URI.create(b.endsWith("/") ? b : b + "/");
        this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(s.requestTimeout).build();
        this.poller = new Thread(this::pollLoop, "relay-poll-" + s.name);
        this.poller.setDaemon(true);
    }

    @Override
    public void start() {
        client.state(RelayClient.State.CONNECTING);
        poller.start();
    }

    @Override
    public boolean connected() {
        return connected;
    }

    @Override
    public List<SendResult> send(List<JsonNode> packets) throws IOException {
        ObjectNode body = Frames.JSON.createObjectNode();
        ArrayNode arr = body.putArray("packets");
        arr.addAll(packets);
        HttpRequest req = HttpRequest.newBuilder(base.resolve("relay/v1/packets")).timeout(s.requestTimeout)
                .header("Authorization", "Bearer " + s.token).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofByteArray(Frames.JSON.writeValueAsBytes(body))).build();
        JsonNode answer = exchange(req);
        List<SendResult> results = new ArrayList<>();
        for (JsonNode r : answer.path("results")) {
            results.add(new SendResult(r.path("packetId").asText(), SendResult.Status.valueOf(r.path("status").asText()),
                    r.hasNonNull("reason") ? r.get("reason").asText() : null));
        }
        if (results.size() != packets.size()) {
            throw new IOException("the server acknowledged " + results.size() + " of " + packets.size() + " packets");
        }
        return results;
    }

    private JsonNode exchange(HttpRequest req) throws IOException {
        HttpResponse<byte[]> res;
        try {
            res = http.send(req, HttpResponse.BodyHandlers.ofByteArray());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } catch (java.net.ConnectException | java.net.http.HttpConnectTimeoutException e) {
            down(e);
            throw new RelayClient.NotSentException("cannot connect to " + base + ": " + e, e); // nothing went out
        } catch (IOException e) {
            down(e);
            throw e;
        }
        int code = res.statusCode();
        JsonNode body;
        try {
            body = res.body().length == 0 ? Frames.JSON.createObjectNode() : Frames.JSON.readTree(res.body());
        } catch (IOException e) {
            body = Frames.JSON.createObjectNode().put("error", "HTTP " + code);
        }
        if (code == 200) {
            up();
            return body;
        }
        if (code >= 400 && code < 500 && code != 408 && code != 429) {
            up();
            RelayRejectedException r = new RelayRejectedException(code, body.path("error").asText("HTTP " + code),
                    body.path("field").asText(null), body.path("rule").asText(null));
            s.onError.accept(r);
            throw r;
        }
        IOException e = new IOException("relay answered HTTP " + code + ": " + body.path("error").asText(""));
        down(e);
        throw e;
    }

    private void up() {
        if (!connected) {
            connected = true;
            client.state(RelayClient.State.CONNECTED);
        }
    }

    private void down(Throwable e) {
        if (connected) {
            connected = false;
            client.state(RelayClient.State.DISCONNECTED);
        }
        s.onError.accept(e);
    }

    /** Long-polls, handing each packet to the handler on this thread; the next GET's cursor acknowledges them. */
    private void pollLoop() {
        int failures = 0;
        while (client.running) {
            long cursor = client.cursor();
            URI uri = base.resolve("relay/v1/inbox?cursor=" + cursor + "&wait=" + s.pollWait.toSeconds());
            // a proxy or firewall that swallows the request must not hang the poller: give up a bit after the wait
            HttpRequest req = HttpRequest.newBuilder(uri).timeout(s.pollWait.plus(s.requestTimeout))
                    .header("Authorization", "Bearer " + s.token).GET().build();
            try {
                JsonNode answer = exchange(req);
                if (answer.hasNonNull("id")) {
                    client.authenticated(answer.get("id").asText());
                }
                JsonNode entries = answer.path("packets");
                long[] seqs = new long[entries.size()];
                List<Packet> packets = new ArrayList<>();
                for (JsonNode entry : entries) {
                    seqs[packets.size()] = entry.path("seq").asLong();
                    packets.add(Packet.fromJson(entry.path("packet")));
                }
                if (!packets.isEmpty()) {
                    client.deliver(seqs, packets);
                }
                failures = 0;
            } catch (RelayRejectedException e) {
                RelayClient.pause(client.backoff(failures++ + 4));
            } catch (Exception e) { // link down, or the handler failed: the packet comes again
                if (!(e instanceof IOException)) {
                    s.onError.accept(e);
                }
                if (!client.running) {
                    return;
                }
                RelayClient.pause(client.backoff(failures++));
            }
        }
    }

    @Override
    public void close() {
        poller.interrupt();
        connected = false;
    }
}
