package org.hospitalhub.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

import org.hospitalhub.federation.cdm.CdmSchema;
import org.hospitalhub.federation.cdm.SyntheticCdm;
import org.hospitalhub.it.FederationNodes.Node;
import org.postgresql.ds.PGSimpleDataSource;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * The clinical side of {@link FederationNetworkIT}: each node's synthetic OMOP CDM data (schema {@code cdm} of its own
 * database, made by the data side's generator with its own seed and person ids), the study's step definitions, and the
 * checks of the results: small cells suppressed, pooled statistics equal to a computation on the union of the nodes'
 * per-person values.
 */
final class FederationStudy {

    // Type 2 or type 1 diabetes (through the concept hierarchy), first diagnosis, aged 30+, a year observed before.
    static final String COHORT = """
            {"version": 1,
             "entry": {"domain": "condition", "conceptSet": {"concepts": [201820], "includeDescendants": true}},
             "firstEventOnly": true, "priorObservationDays": 365, "age": {"min": 30}}""";
    static final String VARIABLES = """
            {"version": 1, "variables": [
              {"name": "age", "kind": "ageAtIndex"},
              {"name": "sex", "kind": "gender"},
              {"name": "sbp_max", "kind": "measurementValue", "statistic": "max", "criterion": {"domain": "measurement",
                 "conceptSet": {"concepts": [3004249]}, "window": {"startDays": -36500, "endDays": 36500}}}]}""";
    static final String ANALYSIS = """
            {"version": 1, "analyses": [
              {"name": "n", "kind": "count"},
              {"name": "age", "kind": "numeric", "variable": "age"},
              {"name": "sbp", "kind": "numeric", "variable": "sbp_max"},
              {"name": "sex", "kind": "proportion", "variable": "sex"}]}""";
    // Hypertensive disorder, first diagnosis.
    static final String COHORT2 = """
            {"version": 1, "entry": {"domain": "condition", "conceptSet": {"concepts": [316866], "includeDescendants": true}},
             "firstEventOnly": true}""";
    static final String VARIABLES2 = """
            {"version": 1, "variables": [{"name": "age", "kind": "ageAtIndex"}]}""";
    // A rare cohort: coronary artery bypass graft (a few persons per node: suppressed where fewer than 5).
    static final String COHORT3 = """
            {"version": 1, "entry": {"domain": "procedure", "conceptSet": {"concepts": [4336464]}}, "firstEventOnly": true}""";
    static final String DONE = "SUCCEEDED";

    private FederationStudy() {
    }

    static void load(Node north, Node hub, Node south) throws Exception {
        int[][] spec = { { 1, 900, 41 }, { 100_001, 600, 42 }, { 200_001, 300, 43 } };
        Node[] nodes = { north, hub, south };
        for (int i = 0; i < 3; i++) {
            PGSimpleDataSource ds = new PGSimpleDataSource();
            ds.setUrl(nodes[i].db.url);
            ds.setUser("postgres");
            CdmSchema.migrate(ds, "cdm");
            try (Connection c = ds.getConnection()) {
                SyntheticCdm.generate(c, "cdm", spec[i][0], spec[i][1], spec[i][2]);
            }
        }
    }

    static void exec(Node n, String sql) throws Exception {
        try (Connection c = DriverManager.getConnection(n.db.url, "postgres", ""); Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }

    /** Makes the node's next cohort query fail: a table it reads disappears. */
    static void breakData(Node n) throws Exception {
        exec(n, "ALTER TABLE cdm.observation_period RENAME TO observation_period_away");
    }

    static void repairData(Node n) throws Exception {
        exec(n, "ALTER TABLE cdm.observation_period_away RENAME TO observation_period");
    }

    /** Holds a lock that makes the node's next cohort query wait until the returned connection commits. */
    static Connection slowDown(Node n) throws Exception {
        Connection c = DriverManager.getConnection(n.db.url, "postgres", "");
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
            s.execute("LOCK TABLE cdm.person IN ACCESS EXCLUSIVE MODE");
        }
        return c;
    }

    /** A cohort step's persons on one node, counted in its own result table. */
    static long persons(Node n, String step) throws Exception {
        return FederationNetworkIT.count(n, "SELECT COUNT(DISTINCT person_id) FROM study_cohort_member WHERE step_id = '" + step + "'");
    }

    static void results(Node north, Node hub, Node south, String project, String variables, String analysis, String cohort2,
            String cohort3) throws Exception {
        String base = "/api/v1/federation/projects/" + project + "/steps/";
        // the step that failed once on hub left no extra rows: its result equals its rows
        JsonNode c2 = north.get(base + cohort2 + "/results").path("nodes");
        assertEquals(persons(hub, cohort2), c2.path("hub").path("persons").asLong(), c2.toString());
        assertEquals(FederationNetworkIT.count(hub, "SELECT COUNT(*) FROM study_cohort_member WHERE step_id = '" + cohort2 + "'"),
                c2.path("hub").path("entries").asLong(), "no leftovers of the failed attempt");

        // small cells: a count of 1 to 4 leaves a node as "<5"
        JsonNode c3 = north.get(base + cohort3 + "/results").path("nodes");
        int suppressed = 0;
        for (Node n : List.of(north, hub, south)) {
            long p = persons(n, cohort3);
            JsonNode reported = c3.path(n.id).path("persons");
            if (p >= 1 && p < 5) {
                assertEquals("<5", reported.asText(), n.id + " has " + p + " persons: " + c3);
                suppressed++;
            } else {
                assertEquals(p, reported.asLong(), n.id + ": " + c3);
            }
        }
        assertTrue(suppressed > 0, "the rare cohort is small somewhere: " + c3);
        assertTrue(suppressed < 3, "and not everywhere (a shown count is checked too): " + c3);

        // pooled = the union: age and systolic blood pressure over every node's per-person values
        JsonNode pooled = north.get(base + analysis + "/pooled").path("pooled").path("analyses");
        for (String[] a : new String[][] { { "age", "age" }, { "sbp", "sbp_max" } }) {
            List<Double> union = new ArrayList<>();
            for (Node n : List.of(north, hub, south)) {
                try (Connection c = DriverManager.getConnection(n.db.url, "postgres", ""); PreparedStatement q = c.prepareStatement(
                        "SELECT num_value FROM study_variable_value WHERE step_id = ? AND name = ? AND num_value IS NOT NULL")) {
                    q.setString(1, variables);
                    q.setString(2, a[1]);
                    try (ResultSet rs = q.executeQuery()) {
                        while (rs.next()) {
                            union.add(rs.getDouble(1));
                        }
                    }
                }
            }
            double mean = union.stream().mapToDouble(Double::doubleValue).average().orElseThrow();
            double ss = union.stream().mapToDouble(v -> (v - mean) * (v - mean)).sum();
            double sd = Math.sqrt(ss / (union.size() - 1));
            JsonNode p = pooled.path(a[0]);
            assertEquals(union.size(), p.path("n").asLong(), a[0] + ": " + p);
            assertEquals(mean, p.path("mean").asDouble(), 1e-9 * Math.max(1, Math.abs(mean)), a[0] + " mean: " + p);
            assertEquals(sd, p.path("sd").asDouble(), 1e-9 * Math.max(1, sd), a[0] + " sd: " + p);
        }
        String csv = north.call("GET", base + analysis + "/pooled?format=csv", null).body();
        assertTrue(csv.lines().findFirst().orElse("").startsWith("scope,analysis,statistic,value"), csv);
    }
}
