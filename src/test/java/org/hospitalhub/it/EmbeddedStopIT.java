package org.hospitalhub.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The README's first command, the packaged hub on its embedded default (H2 file database, the demo hospital, no server
 * of any kind), stopped the way a terminal or Kubernetes stops it (SIGTERM): a clean stop logs no ERROR and no
 * closed database (H2 used to be closed by its own JVM shutdown hook under the hub's still-running pollers, and the
 * leases were released after the pool had closed), and what was stored is there after the restart.
 */
class EmbeddedStopIT {

    private static final int PORT = Integer.parseInt(System.getenv().getOrDefault("HUB_IT_PORT", "8095")) + 3;
    private static final String DEMO_EVENT = """
            {"eventId":"it-embedded-1","type":"his.charge.created","source":"his","hospital":"demo","key":"P001",
             "occurredAt":"2026-11-22T08:00:00+08:00",
             "payload":{"chargeId":"C1","patientId":"P001","visitId":"V1","department":"ICU","amount":12.5,
                        "currency":"CNY","items":[{"code":"X","quantity":1,"unitPrice":12.5}]}}""";
    private static HubProcess hub;

    @AfterAll
    static void tearDown() throws Exception {
        if (hub != null && hub.alive()) {
            hub.kill();
        }
    }

    @Test
    void aStoppedEmbeddedHubLogsNoErrorAndKeepsWhatItStored() throws Exception {
        Path work = Files.createTempDirectory("hub-embedded-stop");
        Path log = work.resolve("hub.log");
        hub = new HubProcess(PORT, Map.of(
                "HUB_DATA_DIR", work.resolve("data").toString(),
                "HUB_AUTH_CLIENTS", "his:source:it-his-key;ops:operator:it-ops-key"), log);
        hub.start();
        var first = hub.post("/api/v1/events", "it-his-key", DEMO_EVENT);
        assertEquals(202, first.statusCode(), first.body());
        Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
        while (delivered() < 1 && Instant.now().isBefore(deadline)) {
            Thread.sleep(250);
        }
        assertEquals(1.0, delivered(), "the demo charge reached finance_staging (hub_delivery_delivered_total)");

        long before = Files.size(log);
        hub.stop();
        String stopping = Files.readString(log).substring((int) before);
        List<String> errors = stopping.lines().filter(l -> l.contains(" ERROR ") || l.contains("\"level\":\"ERROR\"")
                || l.contains("already closed") || l.contains("Cannot release lease")).toList();
        assertEquals(List.of(), errors, "the stop logged errors or a closed database; whole log: " + log);
        assertTrue(stopping.contains("stopped in"), "Quarkus reported its stop: " + stopping);

        hub.start();
        var again = hub.post("/api/v1/events", "it-his-key", DEMO_EVENT);
        assertEquals(202, again.statusCode(), again.body());
        assertTrue(again.body().contains("\"duplicates\":[\"it-embedded-1\"]"), "stored before the stop: " + again.body());
        hub.stop();
    }

    private static double delivered() throws Exception {
        Matcher m = Pattern.compile("(?m)^hub_delivery_delivered_total\\{[^}]*\\} ([0-9.E]+)$").matcher(hub.get("/q/metrics"));
        double total = 0;
        while (m.find()) {
            total += Double.parseDouble(m.group(1));
        }
        return total;
    }
}
