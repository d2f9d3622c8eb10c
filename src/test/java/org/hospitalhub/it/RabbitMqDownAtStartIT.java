package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.RabbitMqResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

/**
 * The packaged hub started while RabbitMQ is down, with a rabbitmq-ingest flow (whose consumer declares its exchange and
 * queue when it starts): the hub starts anyway, is not ready and names RabbitMQ, serves HTTP ingest meanwhile; when the
 * broker is back the supervised route starts by itself, the hub becomes ready, and a message published then is stored
 * and delivered.
 */
class RabbitMqDownAtStartIT {

    private static final int PORT = Integer.parseInt(System.getenv().getOrDefault("HUB_IT_PORT", "8095")) + 2;
    private static final String QUEUE = "hh-test-it-down";
    private static HubProcess hub;

    @AfterAll
    static void tearDown() throws Exception {
        RabbitMqResource.rabbitmqctl(60, "start_app");
        if (hub != null && hub.alive()) {
            hub.kill();
        }
    }

    @Test
    void hubStartsUnreadyWithoutRabbitMqAndItsIngestStartsWhenTheBrokerComes() throws Exception {
        ItDatabase db = ItDatabase.fresh("it_rmq_down");
        Path work = Files.createDirectories(Path.of("target", "rabbitmq-down-it").toAbsolutePath());
        Path routes = Files.createDirectories(work.resolve("routes"));
        Files.writeString(routes.resolve("flows.camel.yaml"), """
                - templatedRoute:
                    routeTemplateRef: rabbitmq-ingest
                    routeId: r-down-ingest
                    parameters:
                      - {name: ingestId, value: r-down-in}
                      - {name: queue, value: %s}
                      - {name: exchange, value: hh-test-it-down-in}
                      - {name: allowedSources, value: his}
                - templatedRoute:
                    routeTemplateRef: outbox-source
                    routeId: r-down-source
                    parameters:
                      - {name: flowId, value: r-down}
                      - {name: types, value: his.charge.created}
                      - {name: completionSize, value: "10"}
                      - {name: completionTimeout, value: "200"}
                      - {name: pollPeriod, value: "100"}
                - templatedRoute:
                    routeTemplateRef: jdbc-sink
                    routeId: r-down-sink
                    parameters:
                      - {name: flowId, value: r-down}
                      - {name: table, value: finance_staging}
                """.formatted(QUEUE));
        RabbitMqResource.rabbitmqctl(60, "stop_app");
        try {
            hub = new HubProcess(PORT, Map.of(
                    "QUARKUS_PROFILE", "postgres",
                    "HUB_DB_URL", db.url,
                    "HUB_DB_USERNAME", "postgres",
                    "HUB_ROUTES_DIR", routes.toString(),
                    "HUB_AUTH_CLIENTS", "his:source:it-his-key"), work.resolve("hub.log"));
            hub.start("/q/health/started");
            await().atMost(Duration.ofSeconds(30)).until(() -> hub.status("/q/health/ready") == 503);
            assertTrue(hub.get("/q/health/ready").contains("rabbitmq"), "readiness names RabbitMQ");
            // HTTP ingest works meanwhile
            assertEquals(202, hub.post("/api/v1/events", "it-his-key", Events.charge("rdown-http", "P1")).statusCode());
        } finally {
            RabbitMqResource.rabbitmqctl(60, "start_app");
        }
        await().atMost(Duration.ofSeconds(90)).until(() -> hub.status("/q/health/ready") == 200);
        CachingConnectionFactory cf = RabbitMqResource.connectionFactory();
        try {
            RabbitTemplate t = new RabbitTemplate(cf);
            MessageProperties props = new MessageProperties();
            props.setContentType("application/json");
            t.send("hh-test-it-down-in", QUEUE, new org.springframework.amqp.core.Message(
                    Events.charge("rdown-mq", "P2").getBytes(java.nio.charset.StandardCharsets.UTF_8), props));
        } finally {
            cf.destroy();
        }
        await().atMost(Duration.ofSeconds(30)).until(() ->
                db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id IN ('rdown-http', 'rdown-mq')") == 2);
        assertEquals(0, db.count("SELECT COUNT(*) FROM dead_letter"));
    }
}
