package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * qc timers across replicas and restarts, with the packaged hub: two hub processes share one PostgreSQL database and
 * Quartz store, and every deadline fires exactly once across both (the sweep is one clustered Quartz job run every
 * 250 ms on whichever replica acquires it, claiming 5 timers at a time); one replica is killed (SIGKILL) and the other
 * fires the next deadlines alone; then it is killed too with deadlines pending, the deadlines pass while no hub runs,
 * and a restarted hub fires each of them once at startup.
 */
class QcClusterIT {

    private static final String DB = System.getProperty("hub.test.db", "hospital_hub_test") + "_qcit";
    private static final String URL = "jdbc:postgresql://127.0.0.1:5432/" + DB;
    private static final String KEY = "it-his-key";
    private static HubProcess a;
    private static HubProcess b;

    @BeforeAll
    static void setUp() throws Exception {
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + DB + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + DB);
        }
        Path work = Files.createDirectories(Path.of("target", "qc-cluster-it").toAbsolutePath());
        Path routes = Files.createDirectories(work.resolve("routes"));
        Path rules = Files.createDirectories(work.resolve("rules"));
        Files.writeString(routes.resolve("qc.camel.yaml"), """
                - templatedRoute:
                    routeTemplateRef: outbox-source
                    routeId: it-qc-source
                    parameters:
                      - {name: flowId, value: it-qc}
                      - {name: types, value: "qc.*"}
                      - {name: completionTimeout, value: "200"}
                      - {name: pollPeriod, value: "100"}
                - templatedRoute:
                    routeTemplateRef: qc-sink
                    routeId: it-qc-sink
                    parameters:
                      - {name: flowId, value: it-qc}
                """);
        Files.writeString(rules.resolve("fast.yaml"), """
                hospital: it
                rules:
                  - id: consultation-emergency
                    trigger: {event: qc.consultation.requested, when: {urgency: emergency}}
                    instanceKey: consultationId
                    document: consultation-record
                    deadline: 8s
                    recipients: [department:consultedDepartment]
                """);
        Map<String, String> env = new java.util.HashMap<>(Map.of(
                "QUARKUS_PROFILE", "postgres",
                "HUB_DB_URL", URL,
                "HUB_DB_USERNAME", "postgres",
                "HUB_ROUTES_DIR", routes.toString(),
                "HUB_QC_RULES_DIR", rules.toString(),
                "HUB_AUTH_CLIENTS", "his:source:" + KEY,
                "HUB_LEASE_TTL", "3s",
                "QUARKUS_QUARTZ_MISFIRE_THRESHOLD", "1s",
                "HUB_QC_TIMER_IDLE_WAIT_MS", "1000",
                "HUB_QC_TIMER_SWEEP_EVERY", "250ms"));
        env.put("HUB_QC_TIMER_BATCH", "5");
        a = new HubProcess(HubProcess.freePort(), env, work.resolve("hub-a.log"));
        b = new HubProcess(HubProcess.freePort(), env, work.resolve("hub-b.log"));
    }

    @AfterAll
    static void tearDown() throws Exception {
        for (HubProcess h : new HubProcess[] { a, b }) {
            if (h != null && h.alive()) {
                h.kill();
            }
        }
    }

    private static long count(String sql) throws Exception {
        try (Connection c = DriverManager.getConnection(URL, "postgres", ""); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** Admissions and emergency consultations (due 8 s after their time) for n visits. */
    private static String events(String prefix, int n, Instant at) {
        List<String> evs = new ArrayList<>();
        String t = at.atOffset(ZoneOffset.UTC).toString();
        for (int i = 0; i < n; i++) {
            String v = prefix + i;
            evs.add("""
                    {"eventId":"%s-adm","type":"qc.admission","source":"his","hospital":"it","key":"%s","occurredAt":"%s",
                     "payload":{"patientId":"P%s","visitId":"%s","department":"CARDIO","attendingDoctor":"DR-A"}}
                    """.formatted(v, v, at.minusSeconds(60).atOffset(ZoneOffset.UTC), v, v));
            evs.add("""
                    {"eventId":"%s-con","type":"qc.consultation.requested","source":"his","hospital":"it","key":"%s","occurredAt":"%s",
                     "payload":{"patientId":"P%s","visitId":"%s","consultationId":"C%s","urgency":"emergency","department":"CARDIO",
                                "consultedDepartment":"ICU"}}
                    """.formatted(v, v, t, v, v, v));
        }
        return "[" + String.join(",", evs) + "]";
    }

    private static String consultations(String prefix) {
        return "FROM qc_task WHERE rule_id = 'consultation-emergency' AND visit_id LIKE '" + prefix + "%'";
    }

    @Test
    void eachDeadlineFiresOnceAcrossReplicasAndAfterARestart() throws Exception {
        a.start();
        b.start();
        int n = 30;
        Instant at = Instant.now().plusSeconds(2);
        assertEquals(202, a.post("/api/v1/events", KEY, events("two-", n, at)).statusCode());
        await().atMost(Duration.ofSeconds(30)).until(() -> count("SELECT COUNT(*) " + consultations("two-")) == n);
        await().atMost(Duration.ofSeconds(40)).pollInterval(Duration.ofMillis(200))
                .until(() -> count("SELECT COUNT(*) " + consultations("two-") + " AND status = 'OVERDUE'") == n);
        Thread.sleep(2000); // anything that would fire twice has had time to
        assertEquals(n, count("SELECT COUNT(*) FROM qc_timer_fire f JOIN qc_task t ON t.id = f.task_id WHERE f.kind = 'DUE' "
                + "AND t.visit_id LIKE 'two-%'"), "each deadline fired once across the two replicas");
        assertEquals(n, count("SELECT COUNT(DISTINCT f.task_id) FROM qc_timer_fire f JOIN qc_task t ON t.id = f.task_id "
                + "WHERE f.kind = 'DUE' AND t.visit_id LIKE 'two-%'"));
        assertEquals(n, count("SELECT COUNT(*) FROM qc_task_event e JOIN qc_task t ON t.id = e.task_id WHERE e.kind = 'OVERDUE' "
                + "AND t.visit_id LIKE 'two-%'"));
        long replicas = count("SELECT COUNT(DISTINCT f.instance_id) FROM qc_timer_fire f JOIN qc_task t ON t.id = f.task_id "
                + "WHERE t.visit_id LIKE 'two-%'");
        System.out.println("QcClusterIT: the two-replica deadlines were fired by " + replicas + " replica(s)");
        assertEquals(0, count("SELECT COUNT(*) FROM qc_timer WHERE task_id IN (SELECT id " + consultations("two-") + ")"),
                "a fired deadline leaves no timer behind (the admissions' own tasks, due in hours, keep theirs)");

        // one replica killed: the other one's sweep carries on alone
        a.kill();
        at = Instant.now().plusSeconds(2);
        assertEquals(202, b.post("/api/v1/events", KEY, events("fail-", n, at)).statusCode());
        await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200))
                .until(() -> count("SELECT COUNT(*) " + consultations("fail-") + " AND status = 'OVERDUE'") == n);
        Thread.sleep(2000);
        assertEquals(n, count("SELECT COUNT(*) FROM qc_timer_fire f JOIN qc_task t ON t.id = f.task_id WHERE f.kind = 'DUE' "
                + "AND t.visit_id LIKE 'fail-%'"), "each deadline fired once by the surviving replica");

        // deadlines pending, every hub killed, the deadlines pass while nothing runs, one hub comes back
        at = Instant.now().plusSeconds(6);
        assertEquals(202, b.post("/api/v1/events", KEY, events("down-", n, at)).statusCode());
        await().atMost(Duration.ofSeconds(30)).until(() -> count("SELECT COUNT(*) " + consultations("down-") + " AND status = 'OPEN' "
                + "AND timer_due_at IS NOT NULL") == n);
        assertEquals(n, count("SELECT COUNT(*) FROM qc_timer WHERE kind = 'DUE' AND task_id IN (SELECT id "
                + consultations("down-") + ")"), "the timers are stored with their tasks");
        b.kill();
        Thread.sleep(Math.max(0, Duration.between(Instant.now(), at.plusSeconds(10)).toMillis()));
        assertEquals(n, count("SELECT COUNT(*) " + consultations("down-") + " AND status = 'OPEN'"), "nothing ran meanwhile");
        Instant restart = Instant.now();
        a.start();
        await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200))
                .until(() -> count("SELECT COUNT(*) " + consultations("down-") + " AND status = 'OVERDUE'") == n);
        Thread.sleep(2000);
        assertEquals(n, count("SELECT COUNT(*) FROM qc_timer_fire f JOIN qc_task t ON t.id = f.task_id WHERE f.kind = 'DUE' "
                + "AND t.visit_id LIKE 'down-%'"), "each missed deadline fired once after the restart");
        assertEquals(0, count("SELECT COUNT(*) FROM qc_timer_fire f JOIN qc_task t ON t.id = f.task_id WHERE f.kind = 'DUE' "
                + "AND t.visit_id LIKE 'down-%' AND f.fired_at < TIMESTAMPTZ '" + restart + "'"),
                "the missed deadlines fired after the restart, none before");
        assertEquals(0, count("SELECT COUNT(*) FROM dead_letter"));
    }
}
