package org.hospitalhub.qc;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;

import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.hospitalhub.support.Events;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/** Clinical events for the qc tests, posted through the hub's ingest and awaited through the t-qc flow. */
final class QcEvents {

    static final String SOURCE_KEY = "test-his-key";
    static final String OPS = "test-ops-key";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String hospital;
    private final String visit;
    private final String patient;
    private final List<String> posted = new ArrayList<>();
    private int n;

    QcEvents(String hospital, String visit, String patient) {
        this.hospital = hospital;
        this.visit = visit;
        this.patient = patient;
    }

    /** An event of this visit; fields are "name", value pairs added to the payload. */
    String event(String id, String type, Instant at, Object... fields) {
        ObjectNode env = JSON.createObjectNode();
        env.put("eventId", id);
        env.put("type", type);
        env.put("source", "his");
        env.put("hospital", hospital);
        env.put("key", visit);
        env.put("occurredAt", at.atOffset(ZoneOffset.ofHours(8)).toString());
        ObjectNode p = env.putObject("payload");
        p.put("patientId", patient);
        p.put("visitId", visit);
        Map<String, Object> f = new LinkedHashMap<>();
        for (int i = 0; i < fields.length; i += 2) {
            f.put((String) fields[i], fields[i + 1]);
        }
        f.forEach((k, v) -> p.putPOJO(k, v));
        return env.toString();
    }

    String id() {
        return visit + "-e" + (++n);
    }

    /** Posts events (one request) and waits until the qc flow has delivered or dead-lettered them. */
    List<String> post(String... events) {
        List<String> ids = new ArrayList<>();
        for (String e : events) {
            try {
                ids.add(JSON.readTree(e).get("eventId").asText());
            } catch (Exception ex) {
                throw new IllegalArgumentException(ex);
            }
        }
        given().header("X-Api-Key", SOURCE_KEY).contentType("application/json").body("[" + String.join(",", events) + "]")
                .post("/api/v1/events").then().statusCode(202);
        posted.addAll(ids);
        awaitSettled(ids);
        return ids;
    }

    static void awaitSettled(List<String> ids) {
        await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(50)).until(() -> {
            for (String id : ids) {
                if (Events.count("SELECT COUNT(*) FROM hub_delivery WHERE flow = 't-qc' AND event_id = ? AND status <> 'PENDING'",
                        id) == 0) {
                    return false;
                }
            }
            return true;
        });
    }

    String admission(Instant at, String department, String doctor, Object... more) {
        List<Object> f = new ArrayList<>(List.of("department", department, "attendingDoctor", doctor));
        f.addAll(List.of(more));
        return event(id(), ClinicalEvent.ADMISSION, at, f.toArray());
    }

    String document(Instant at, String type, Object... more) {
        List<Object> f = new ArrayList<>(List.of("documentType", type, "documentId", "D-" + (n + 1), "author", "DR-W"));
        f.addAll(List.of(more));
        return event(id(), ClinicalEvent.DOCUMENT_COMPLETED, at, f.toArray());
    }

    /** status, due_at (as Instant) of a task of this visit. */
    String status(String rule, String instance, int period) {
        List<String> s = Events.strings("SELECT status FROM qc_task WHERE hospital = ? AND visit_id = ? AND rule_id = ? "
                + "AND instance_key = ? AND period_no = ?", hospital, visit, rule, instance, period);
        return s.isEmpty() ? null : s.get(0);
    }

    Instant due(String rule, String instance, int period) {
        List<String> s = Events.strings("SELECT CAST(EXTRACT(EPOCH FROM due_at) * 1000 AS BIGINT) FROM qc_task WHERE hospital = ? "
                + "AND visit_id = ? AND rule_id = ? AND instance_key = ? AND period_no = ?", hospital, visit, rule, instance, period);
        return s.isEmpty() ? null : Instant.ofEpochMilli(Long.parseLong(s.get(0)));
    }

    long taskId(String rule, String instance, int period) {
        return Events.count("SELECT id FROM qc_task WHERE hospital = ? AND visit_id = ? AND rule_id = ? AND instance_key = ? "
                + "AND period_no = ?", hospital, visit, rule, instance, period);
    }

    /** rule|instance|period -> status of every task of the visit. */
    Map<String, String> tasks() {
        Map<String, String> m = new java.util.TreeMap<>();
        for (String s : Events.strings("SELECT rule_id || '|' || instance_key || '|' || period_no || '=' || status FROM qc_task "
                + "WHERE hospital = ? AND visit_id = ?", hospital, visit)) {
            int eq = s.lastIndexOf('=');
            m.put(s.substring(0, eq), s.substring(eq + 1));
        }
        return m;
    }

    String disposition(String eventId) {
        List<String> s = Events.strings("SELECT disposition FROM qc_visit_event WHERE event_id = ?", eventId);
        return s.isEmpty() ? null : s.get(0);
    }

    String visit() {
        return visit;
    }

    String hospital() {
        return hospital;
    }
}
