package org.hospitalhub.ops;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;

import jakarta.inject.Inject;

import org.apache.camel.CamelContext;
import org.apache.camel.model.Model;
import org.apache.camel.model.RouteTemplateDefinition;
import org.hospitalhub.delivery.Flow;
import org.hospitalhub.delivery.FlowRegistry;
import org.hospitalhub.support.Events;
import org.junit.jupiter.api.Test;

import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * A failing message goes through every flow and lands in the dead-letter store. The hub runs the failing hospital
 * (src/test/resources/routes-failing): one flow per template of routes/core, each with a sink that refuses for good.
 * A flow whose route lost its error handling (say a mistyped routeConfigurationId in a template) would drop or loop
 * instead, and this test names it.
 */
@QuarkusTest
@TestProfile(EveryRouteDeadLettersTest.FailingHospital.class)
class EveryRouteDeadLettersTest {

    static final String ROUTES = "src/test/resources/routes-failing";

    public static class FailingHospital implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of("hub.routes.dir", ROUTES);
        }
    }

    /**
     * Templates the failing hospital cannot instantiate yet, with why. Keep it short: every entry is a template whose
     * error handling no test checks.
     */
    static final Map<String, String> NOT_COVERED = Map.of(
            "kafka-source", "fed by a topic, not by the outbox; its dead-letter path is in KafkaTest",
            "kafka-ingest", "an ingest, not a flow: invalid records to dead letter in KafkaTest",
            "rabbitmq-ingest", "an ingest, not a flow: invalid messages to dead letter in RabbitMqTest",
            "sql-poll-source", "an ingest, not a flow: bad rows to dead letter in SqlPollingTest",
            "rabbitmq-sink", "a missing exchange sometimes hangs the publish past the test's bound (to investigate); "
                    + "its retry-then-dead-letter path is in RabbitMqTest.brokerNackFailsTheBatchWhichIsRetriedThenDeadLettered",
            "qc-sink", "refuses only events that contradict a visit's history: dead letters in QcTasksTest",
            "hl7-mllp-ingest", "an ingest, not a flow: refused HL7 messages (AR/AE) to dead letter in Hl7MllpTest");

    /** A valid event of each type the failing flows accept. */
    static final Map<String, Function<String, String>> SAMPLES = Map.of(
            "his.charge.created", id -> Events.charge(id, "P-fail"),
            "finance.voucher.posted", Events::voucher,
            "hrp.stock.issued", Events::stockIssued,
            "his.charge.refunded", id -> """
                    {"eventId":"%s","type":"his.charge.refunded","source":"his","hospital":"test","key":"P-fail",
                     "occurredAt":"2026-11-22T08:00:00+08:00",
                     "payload":{"chargeId":"C-%s","patientId":"P-fail","amount":1,"reason":"test"}}
                    """.formatted(id, id));

    @Inject
    FlowRegistry flows;

    @Inject
    CamelContext camel;

    @Test
    void everyTemplateHasAFailingFlow() throws Exception {
        Model model = camel.getCamelContextExtension().getContextPlugin(Model.class);
        Set<String> templates = new TreeSet<>(model.getRouteTemplateDefinitions().stream()
                .map(RouteTemplateDefinition::getId).toList());
        assertTrue(templates.containsAll(List.of("outbox-source", "jdbc-sink", "http-sink")), templates.toString());

        var report = new RouteValidator().validateFolder(RouteValidator.coreFiles(getClass().getClassLoader()),
                Path.of(ROUTES));
        assertTrue(report.valid(), () -> report.problems().toString());
        Set<String> used = new TreeSet<>(report.templates().values());
        Set<String> missing = new TreeSet<>(templates);
        missing.removeAll(used);
        missing.removeAll(NOT_COVERED.keySet());
        assertTrue(missing.isEmpty(), "templates with no failing flow in " + ROUTES + ": " + missing
                + " (add a flow that uses each, with a sink that refuses for good)");

        // every route of the failing hospital is a flow's source or sink, so the other test reaches all of them
        Set<String> reached = new TreeSet<>();
        for (Flow f : flows.flows()) {
            reached.add(f.routeId());
            camel.getRoutes().stream().filter(r -> r.getEndpoint().getEndpointUri().equals("direct://deliver-" + f.id()))
                    .forEach(r -> reached.add(r.getRouteId()));
        }
        Set<String> declared = new TreeSet<>(report.templates().keySet());
        declared.removeIf(id -> NOT_COVERED.containsKey(report.templates().get(id)));
        assertEquals(declared, reached, "routes of " + ROUTES + " that no flow of FlowRegistry reaches");
    }

    @Test
    void aFailingEventOnEveryFlowReachesTheDeadLetterStore() {
        List<Flow> all = new ArrayList<>(flows.flows());
        assertFalse(all.isEmpty(), "no flows loaded from " + ROUTES);
        List<String[]> sent = new ArrayList<>(); // eventId, flow
        for (Flow f : all) {
            String type = f.types().stream().filter(SAMPLES::containsKey).sorted().findFirst()
                    .orElseGet(() -> fail("flow " + f.id() + " accepts " + f.types() + ": add a sample event of one of "
                            + "them to SAMPLES"));
            String eventId = "every-route-" + f.id();
            given().header("X-Api-Key", "test-ops-key").contentType("application/json")
                    .body(SAMPLES.get(type).apply(eventId)).post("/api/v1/events").then().statusCode(202);
            sent.add(new String[] { eventId, f.id() });
        }
        for (String[] s : sent) {
            await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                    "SELECT COUNT(*) FROM dead_letter WHERE event_id = ? AND flow = ?", s[0], s[1]) == 1);
        }
        for (String[] s : sent) {
            String what = "dead letter of " + s[0] + " on flow " + s[1];
            assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = ? AND flow = ? "
                    + "AND status = 'OPEN' AND error_class <> 'unknown' AND LENGTH(error_message) > 0 "
                    + "AND route_id IS NOT NULL", s[0], s[1]), what + " has its reason");
            assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id = ? AND flow = ? "
                    + "AND status = 'DEAD'", s[0], s[1]), what + ": outbox row DEAD");
        }
        // the reasons name what refused
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 'fail-jdbc' "
                + "AND error_message LIKE '%no_such_staging_table%'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 'fail-http' "
                + "AND error_message LIKE '%422%'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 'fail-kafka' "
                + "AND error_message LIKE '%not a legal Kafka topic name%'"));
    }
}
