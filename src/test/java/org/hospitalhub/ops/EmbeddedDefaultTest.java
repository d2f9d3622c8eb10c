package org.hospitalhub.ops;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.Map;

import jakarta.inject.Inject;

import org.hospitalhub.delivery.Database;
import org.junit.jupiter.api.Test;

import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * The embedded default, as the README's first command runs it: H2 file database (here in a fresh temporary
 * HUB_DATA_DIR), the demo hospital's flows, no PostgreSQL. A demo charge posted over HTTP lands in finance_staging.
 */
@QuarkusTest
@TestProfile(EmbeddedDefaultTest.EmbeddedDefault.class)
class EmbeddedDefaultTest {

    static final Path DATA_DIR;

    static {
        try {
            DATA_DIR = Files.createTempDirectory("hub-embedded-test");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try (var files = Files.walk(DATA_DIR)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            } catch (IOException e) {
                // a temporary folder left behind
            }
        }));
    }

    public static class EmbeddedDefault implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            // undo what PostgresResource and the test hospital set for the other tests
            return Map.of(
                    "hub.datasource", "embedded",
                    "quarkus.datasource.embedded.active", "true",
                    "quarkus.datasource.postgres.active", "false",
                    "hub.data-dir", DATA_DIR.toString(),
                    "hub.routes.dir", "examples/demo-hospital/routes",
                    "hub.batch.completion-timeout", "300");
        }

        @Override
        public boolean disableGlobalTestResources() {
            return true; // no PostgresResource
        }
    }

    @Inject
    Database db;

    private long count(String sql, Object... args) {
        try (Connection c = db.connection(); PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void demoChargeLandsInFinanceStagingInH2() {
        assertFalse(db.isPostgres(), "the hub database is H2");
        assertTrue(Files.exists(DATA_DIR.resolve("hospital-hub.mv.db")), "H2 file under HUB_DATA_DIR " + DATA_DIR);

        String event = """
                {"eventId":"embedded-demo-1","type":"his.charge.created","source":"his","hospital":"demo","key":"P001",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"chargeId":"C1","patientId":"P001","visitId":"V1","department":"ICU","amount":12.5,
                            "currency":"CNY","items":[{"code":"X","quantity":1,"unitPrice":12.5}]}}
                """;
        given().header("X-Api-Key", "test-his-key").contentType("application/json").body(event)
                .post("/api/v1/events").then().statusCode(202);

        await().atMost(Duration.ofSeconds(15)).until(() -> count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'embedded-demo-1'") == 1);
        assertEquals(1, count("SELECT COUNT(*) FROM finance_staging WHERE event_id = 'embedded-demo-1' "
                + "AND event_type = 'his.charge.created' AND hospital = 'demo' AND payload LIKE '%\"chargeId\":\"C1\"%'"));
        await().atMost(Duration.ofSeconds(5)).until(() -> count("SELECT COUNT(*) FROM hub_delivery WHERE "
                + "event_id = 'embedded-demo-1' AND flow = 'demo-charges-to-finance' AND status = 'DELIVERED'") == 1);
        assertEquals(0, count("SELECT COUNT(*) FROM materials_staging"), "a charge is not a stock movement");
    }
}
