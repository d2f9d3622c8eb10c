package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.stream.IntStream;

import org.flywaydb.core.Flyway;
import org.hospitalhub.relay.RelayNode;
import org.hospitalhub.relay.RelayOptions;
import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.RelayClient;
import org.hospitalhub.relay.client.SendResult;

import com.fasterxml.jackson.databind.ObjectMapper;

import io.agroal.api.AgroalDataSource;
import io.agroal.api.configuration.supplier.AgroalDataSourceConfigurationSupplier;
import io.agroal.api.security.NamePrincipal;

/** What the relay's integration tests share: a node in the test JVM next to packaged hubs, and its clients. */
final class RelayIt {

    /** Timings of a relay node in the test JVM: reconnects and sweeps in fractions of a second. */
    static final RelayOptions FAST = RelayOptions.defaults().withTimings(Duration.ofSeconds(1), Duration.ofSeconds(2),
            Duration.ofSeconds(2), Duration.ofMillis(100), Duration.ofSeconds(1), Duration.ofMillis(300));

    static final ObjectMapper JSON = new ObjectMapper();

    private RelayIt() {
    }

    /** The hub's migrations applied to {@code db}, behind a pool for a relay node in the test JVM. */
    static AgroalDataSource migratedPool(ItDatabase db) throws java.sql.SQLException {
        Flyway.configure().dataSource(db.url, "postgres", "").locations("classpath:db/migration").load().migrate();
        return AgroalDataSource.from(new AgroalDataSourceConfigurationSupplier().connectionPoolConfiguration(cp -> cp
                .maxSize(10).connectionFactoryConfiguration(cf -> cf.jdbcUrl(db.url).principal(new NamePrincipal("postgres")))));
    }

    /** A started SDK client adding the {@code n} of every packet it receives to {@code into}; kept in {@code opened}. */
    static RelayClient client(RelayClient.Builder b, List<Integer> into, List<RelayClient> opened) {
        RelayClient c = b.onPacket(p -> into.add(p.parameters().path("n").asInt())).heartbeat(Duration.ofSeconds(1))
                .pollWait(Duration.ofSeconds(2)).requestTimeout(Duration.ofSeconds(2))
                .reconnect(Duration.ofMillis(100), Duration.ofSeconds(1)).sendTimeout(Duration.ofSeconds(90)).build().start();
        opened.add(c);
        return c;
    }

    /** What a test does between two sends of {@link #exchange} (kill a server, restart it). */
    interface During {
        void at(int i) throws Exception;
    }

    /**
     * Sends {@code n} packets {@code it.question} from {@code a} to {@code b} and {@code n} {@code it.answer} back,
     * interleaved, each carrying its number {@code n}; {@code during} runs after each pair. Every send must be stored.
     */
    static void exchange(RelayClient a, String aAddress, RelayClient b, String bAddress, int n, During during) throws Exception {
        List<java.util.concurrent.CompletableFuture<SendResult>> sent = new java.util.ArrayList<>();
        for (int i = 0; i < n; i++) {
            sent.add(a.send(Packet.create(aAddress, bAddress, "it.question", JSON.createObjectNode().put("n", i), 3600)));
            sent.add(b.send(Packet.create(bAddress, aAddress, "it.answer", JSON.createObjectNode().put("n", i), 3600)));
            during.at(i);
        }
        for (java.util.concurrent.CompletableFuture<SendResult> f : sent) {
            SendResult r = f.get(60, java.util.concurrent.TimeUnit.SECONDS);
            assertTrue(r.status() != SendResult.Status.DEAD, r.toString());
        }
    }

    /** Waits until both sides have {@code n} packets, then checks each got 0 .. n-1 once, in order. */
    static void assertEachOnceInOrder(List<Integer> questions, List<Integer> answers, int n, String across) throws Exception {
        List<Integer> expected = IntStream.range(0, n).boxed().toList();
        await().atMost(Duration.ofSeconds(60)).until(() -> questions.size() >= n && answers.size() >= n);
        Thread.sleep(500); // anything still coming would be a duplicate
        assertEquals(expected, questions, "every question once, in order, " + across);
        assertEquals(expected, answers, "every answer once, in order, " + across);
    }

    /** Ends what a relay IT opened: its clients, the city node in this JVM and its pool, the packaged hubs still alive. */
    static void tearDown(List<RelayClient> clients, RelayNode city, AgroalDataSource cityDs, List<HubProcess> hubs)
            throws InterruptedException {
        clients.forEach(RelayClient::close);
        if (city != null) {
            city.close();
        }
        if (cityDs != null) {
            cityDs.close();
        }
        for (HubProcess h : hubs) {
            if (h != null && h.alive()) {
                h.kill();
            }
        }
    }
}
