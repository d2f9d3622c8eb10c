package org.hospitalhub.relay;

import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.RelayClient;

/** A test client of a relay node: an SDK client that keeps what it receives, and on which thread. */
final class Mailbox implements AutoCloseable {

    final String address;
    final List<Packet> received = new CopyOnWriteArrayList<>();
    final List<String> threads = new CopyOnWriteArrayList<>();
    final List<RelayClient.State> states = new CopyOnWriteArrayList<>();
    final RelayClient client;

    private Mailbox(String address, RelayClient.Builder b) {
        this.address = address;
        this.client = b.onPacket(p -> {
            received.add(p);
            threads.add(Thread.currentThread().getName());
        }).onState(states::add).heartbeat(Duration.ofSeconds(1)).pollWait(Duration.ofSeconds(2)).requestTimeout(Duration.ofSeconds(2))
                .reconnect(Duration.ofMillis(100), Duration.ofSeconds(1)).sendTimeout(Duration.ofSeconds(60))
                .name(address).build().start();
    }

    static Mailbox http(String address, int port, String token) {
        return new Mailbox(address, RelayClient.builder().http(URI.create("http://127.0.0.1:" + port)).token(token));
    }

    static Mailbox tcp(String address, int port, String token) {
        return new Mailbox(address, RelayClient.builder().tcp("127.0.0.1", port).token(token));
    }

    /** The {@code n} parameters of the packets of one test run, in arrival order. */
    List<Integer> run(String run) {
        List<Integer> out = new ArrayList<>();
        for (Packet p : received) {
            if (run.equals(p.parameters().path("run").asText())) {
                out.add(p.parameters().path("n").asInt());
            }
        }
        return out;
    }

    List<Packet> packets(String run) {
        return received.stream().filter(p -> run.equals(p.parameters().path("run").asText())).toList();
    }

    long connects() {
        return states.stream().filter(s -> s == RelayClient.State.CONNECTED).count();
    }

    /** Packets with this command about this consultation. */
    List<Packet> consultation(String command, String consultationId) {
        return received.stream().filter(p -> command.equals(p.command())
                && consultationId.equals(p.parameters().path("consultationId").asText())).toList();
    }

    @Override
    public void close() {
        client.close();
    }
}
