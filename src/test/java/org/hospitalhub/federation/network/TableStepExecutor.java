package org.hospitalhub.federation.network;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Alternative;

import org.hospitalhub.delivery.Database;
import org.hospitalhub.federation.StepContext;
import org.hospitalhub.federation.StepDefinitionException;
import org.hospitalhub.federation.StepExecutor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A small real StepExecutor for the network tests (selected by {@link FederationTestProfile} only): it queries the
 * tiny table {@code fed_test_measure} in the test's PostgreSQL. A cohort ({@code minValue}) writes its persons to
 * {@code fed_test_cohort}; an analysis counts and sums the values of its cohort. {@code failTimes: n} makes the first n
 * runs fail after writing part of the cohort (what {@link #clean} must remove); {@code invalid: true} is an invalid
 * definition. Every start is logged in {@code fed_test_run} (ordering assertions).
 */
@Alternative
@ApplicationScoped
public class TableStepExecutor implements StepExecutor {

    static final String DDL = """
            CREATE TABLE IF NOT EXISTS fed_test_measure (person_id INT PRIMARY KEY, value DOUBLE PRECISION NOT NULL);
            CREATE TABLE IF NOT EXISTS fed_test_cohort (project_id VARCHAR(64), step_id VARCHAR(64), person_id INT);
            CREATE TABLE IF NOT EXISTS fed_test_run (id BIGSERIAL PRIMARY KEY, step_id VARCHAR(64), started_at TIMESTAMPTZ DEFAULT now());
            """;

    private final Database db;
    private final ObjectMapper mapper = new ObjectMapper();

    public TableStepExecutor(Database db) {
        this.db = db;
    }

    @Override
    public JsonNode execute(StepContext step) throws Exception {
        JsonNode d = step.definition();
        if (d.path("invalid").asBoolean(false)) {
            throw new StepDefinitionException("definition.invalid", "hostile definition refused");
        }
        int previousRuns;
        try (Connection c = db.connection()) {
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_test_run (step_id) VALUES (?)")) {
                ins.setString(1, step.stepId());
                ins.executeUpdate();
            }
            previousRuns = count(c, "SELECT COUNT(*) FROM fed_test_run WHERE step_id = ?", step.stepId()) - 1;
        }
        if (d.has("sleepMs")) {
            Thread.sleep(d.get("sleepMs").asLong());
        }
        ObjectNode result = mapper.createObjectNode();
        switch (step.kind()) {
            case "cohort" -> {
                try (Connection c = db.connection(); PreparedStatement ins = c.prepareStatement("INSERT INTO fed_test_cohort "
                        + "(project_id, step_id, person_id) SELECT ?, ?, person_id FROM fed_test_measure WHERE value >= ? ORDER BY person_id")) {
                    ins.setString(1, step.projectId());
                    ins.setString(2, step.stepId());
                    ins.setDouble(3, d.path("minValue").asDouble());
                    ins.executeUpdate(); // autocommit: a failure below leaves these rows behind, as a real crash would
                }
                if (previousRuns < d.path("failTimes").asInt(0)) {
                    throw new SQLException("simulated failure after writing part of the cohort (run " + (previousRuns + 1) + ")");
                }
                try (Connection c = db.connection()) {
                    result.put("persons", count(c, "SELECT COUNT(*) FROM fed_test_cohort WHERE step_id = ?", step.stepId()));
                }
            }
            case "analysis" -> {
                String cohort = step.dependsOn().get("cohort");
                if (cohort == null) {
                    throw new StepDefinitionException("dependsOn.cohort", "an analysis needs a cohort");
                }
                try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT COUNT(*), COALESCE(SUM(m.value), 0) "
                        + "FROM fed_test_cohort k JOIN fed_test_measure m ON m.person_id = k.person_id WHERE k.step_id = ?")) {
                    q.setString(1, cohort);
                    try (ResultSet rs = q.executeQuery()) {
                        rs.next();
                        result.put("count", rs.getLong(1));
                        result.put("sum", rs.getDouble(2));
                    }
                }
            }
            default -> throw new StepDefinitionException("kind", "not supported by the test executor");
        }
        return result;
    }

    @Override
    public void clean(String projectId, String stepId) throws Exception {
        try (Connection c = db.connection();
                PreparedStatement d = c.prepareStatement("DELETE FROM fed_test_cohort WHERE project_id = ? AND step_id = ?")) {
            d.setString(1, projectId);
            d.setString(2, stepId);
            d.executeUpdate();
        }
    }

    private static int count(Connection c, String sql, String arg) throws SQLException {
        try (PreparedStatement q = c.prepareStatement(sql)) {
            q.setString(1, arg);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getInt(1);
            }
        }
    }
}
