package org.hospitalhub.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
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
        hub = embeddedHub(work);
        hub.start();
        var first = hub.post("/api/v1/events", "it-his-key", DEMO_EVENT);
        assertEquals(202, first.statusCode(), first.body());
        Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
        while (delivered() < 1 && Instant.now().isBefore(deadline)) {
            Thread.sleep(250);
        }
        assertEquals(1.0, delivered(), "the demo charge reached finance_staging (hub_delivery_delivered_total)");

        String stopping = stopAndAssertNoError(log, "the stop");
        assertTrue(stopping.contains("stopped in"), "Quarkus reported its stop: " + stopping);

        hub.start();
        var again = hub.post("/api/v1/events", "it-his-key", DEMO_EVENT);
        assertEquals(202, again.statusCode(), again.body());
        assertTrue(again.body().contains("\"duplicates\":[\"it-embedded-1\"]"), "stored before the stop: " + again.body());
        hub.stop();
    }

    /**
     * SIGTERM at varied moments after start, six times on one data folder. With WRITE_DELAY=0 the thread that commits
     * writes H2's file itself; Java closes a FileChannel when the thread using it is interrupted, and the stop interrupts
     * the qc timer sweep (Quartz), which commits every second: H2 lost its file in the middle of a write, closed the
     * database, and the stop logged ERRORs from Quartz and the pool ("The database has been closed", "Writing to …
     * failed") in 2 of 10 stops. The embedded URL now opens the file through H2's {@code retry:} file system, which
     * reopens a channel closed by an interrupt.
     */
    @Test
    void stopsAtAnyMomentLogNoError() throws Exception {
        Path work = Files.createTempDirectory("hub-embedded-stops");
        Path log = work.resolve("hub.log");
        hub = embeddedHub(work);
        for (int i = 0; i < 6; i++) {
            hub.start();
            Thread.sleep(170L * i + 60L * (i % 3)); // 0 to about 1 s after ready, across the sweep's second
            stopAndAssertNoError(log, "stop " + (i + 1));
        }
    }

    /**
     * kill -9 right after the last 202: every event the hub acknowledged is there after the restart and lands once.
     * H2 writes committed transactions to its file from a background thread, by default up to 500 ms later
     * (WRITE_DELAY); a killed hub lost the events acknowledged in that time (all 40 here) until the embedded URL said
     * WRITE_DELAY=0.
     */
    @Test
    void whatTheEmbeddedHubAcknowledgedSurvivesAKill() throws Exception {
        Path work = Files.createTempDirectory("hub-embedded-kill");
        Path data = work.resolve("data");
        hub = embeddedHub(work);
        hub.start();
        List<String> ids = new ArrayList<>();
        StringBuilder all = new StringBuilder("[");
        for (int i = 0; i < 40; i++) {
            String id = "it-kill-" + i;
            String event = DEMO_EVENT.replace("it-embedded-1", id).replace("\"C1\"", "\"K" + i + "\"");
            var r = hub.post("/api/v1/events", "it-his-key", event);
            assertEquals(202, r.statusCode(), r.body());
            ids.add(id);
            all.append(i == 0 ? "" : ",").append(event);
        }
        hub.kill(); // at once after the last acknowledgement

        hub.start();
        var again = hub.post("/api/v1/events", "it-his-key", all.append(']').toString());
        assertEquals(202, again.statusCode(), again.body());
        var duplicates = new com.fasterxml.jackson.databind.ObjectMapper().readTree(again.body()).path("duplicates");
        List<String> known = new ArrayList<>();
        duplicates.forEach(d -> known.add(d.asText()));
        assertEquals(new java.util.TreeSet<>(ids), new java.util.TreeSet<>(known),
                "every event acknowledged before the kill is known after the restart: " + again.body());
        Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
        while (backlog() != 0 && Instant.now().isBefore(deadline)) {
            Thread.sleep(250);
        }
        Thread.sleep(1000); // past the next poll of the outbox
        hub.stop();
        try (var c = java.sql.DriverManager.getConnection("jdbc:h2:file:" + data.resolve("hospital-hub")
                + ";MODE=PostgreSQL;DATABASE_TO_LOWER=TRUE", "hub", "");
                var q = c.createStatement().executeQuery(
                        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM finance_staging WHERE event_id LIKE 'it-kill-%'")) {
            q.next();
            assertEquals(40, q.getInt(1), "every acknowledged event reached finance_staging");
            assertEquals(40, q.getInt(2), "once each");
        }
    }

    /** Events stored and not delivered yet, over all flows; -1 before the gauges exist. */
    /** The packaged hub on its embedded default, its data in {@code work}/data and its log in {@code work}/hub.log. */
    private static HubProcess embeddedHub(Path work) {
        return new HubProcess(PORT, Map.of(
                "HUB_DATA_DIR", work.resolve("data").toString(),
                "HUB_AUTH_CLIENTS", "his:source:it-his-key;ops:operator:it-ops-key"), work.resolve("hub.log"));
    }

    /** SIGTERM; what the hub logged while stopping must hold no ERROR and no sign of a database closed under it. */
    private static String stopAndAssertNoError(Path log, String which) throws Exception {
        long before = Files.size(log);
        hub.stop();
        String stopping = Files.readString(log).substring((int) before);
        List<String> errors = stopping.lines().filter(l -> l.contains(" ERROR ") || l.contains("\"level\":\"ERROR\"")
                || l.contains("already closed") || l.contains("Cannot release lease") || l.contains("has been closed")
                || l.contains("Writing to")).toList();
        assertEquals(List.of(), errors, which + " logged errors or a closed database; whole log: " + log);
        return stopping;
    }

    private static double backlog() throws Exception {
        Matcher m = Pattern.compile("(?m)^hub_delivery_backlog_events\\{[^}]*\\} ([0-9.E]+)$").matcher(hub.get("/q/metrics"));
        double total = -1;
        while (m.find()) {
            total = Math.max(total, 0) + Double.parseDouble(m.group(1));
        }
        return total;
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
