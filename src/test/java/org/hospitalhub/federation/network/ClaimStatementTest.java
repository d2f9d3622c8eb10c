package org.hospitalhub.federation.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.postgresql.ds.PGSimpleDataSource;

import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The runner's claim on PostgreSQL ({@link StepRunner#readForClaim}): the statement that reads a project for a claim
 * also claims, in SQL, the step the runner's rules ({@link StepRunner#firstRunnable}) pick from that read, and only
 * that one, written as a claim of its own writes it. Run against the federation tables of a schema of its own in the
 * local server's database {@code test}, over many generated projects: steps numbered with and without gaps, from the
 * initiator or not, with or without this node's execution in each state, depending on earlier, later, unknown or no
 * steps, the project accepted or not, and another node's executions beside this node's.
 */
class ClaimStatementTest {

    private static final String SELF = "n-self";
    private static final String INITIATOR = "n-init";
    private static final String SCHEMA = "claim_statement_" + ProcessHandle.current().pid() + "_" + System.nanoTime();
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static PGSimpleDataSource pg;

    @BeforeAll
    static void createTables() throws Exception {
        PGSimpleDataSource admin = new PGSimpleDataSource();
        admin.setUrl("jdbc:postgresql://127.0.0.1:5432/test");
        admin.setUser("postgres");
        try (Connection c = admin.getConnection(); Statement s = c.createStatement()) {
            s.execute("CREATE SCHEMA " + SCHEMA);
        }
        pg = new PGSimpleDataSource();
        pg.setUrl("jdbc:postgresql://127.0.0.1:5432/test?currentSchema=" + SCHEMA);
        pg.setUser("postgres");
        String ddl = Files.readString(Path.of("src/main/resources/db/migration/V25__federation_network.sql"));
        try (Connection c = pg.getConnection(); Statement s = c.createStatement()) {
            for (String statement : ddl.replaceAll("(?m)--.*$", "").split(";")) {
                if (!statement.isBlank()) {
                    s.execute(statement);
                }
            }
        }
    }

    @AfterAll
    static void dropTables() throws SQLException {
        if (pg != null) {
            try (Connection c = pg.getConnection(); Statement s = c.createStatement()) {
                s.execute("DROP SCHEMA IF EXISTS " + SCHEMA + " CASCADE");
            }
        }
    }

    private record Case(String projectId, List<String> stepIds) {
    }

    private static final String[] STATES = { null, "QUEUED", "RUNNING", "SUCCEEDED", "FAILED" };

    /** A generated project: mostly the shapes of a study under way, often with one thing out of place. */
    private static Case generate(Connection c, Random random, int n) throws SQLException {
        String projectId = "p" + n;
        try (PreparedStatement p = c.prepareStatement("INSERT INTO fed_project (project_id, title, initiator, sharing_level, "
                + "invited, local_status, created_at) VALUES (?, 't', ?, 'aggregate-only', ?, ?, now())")) {
            p.setString(1, projectId);
            p.setString(2, INITIATOR);
            p.setString(3, "[\"" + SELF + "\"]");
            p.setString(4, random.nextInt(8) == 0 ? "INVITED" : "ACCEPTED");
            p.executeUpdate();
        }
        int steps = 1 + random.nextInt(4);
        int succeededBefore = random.nextInt(steps + 1); // the usual shape: the first ones succeeded
        List<String> ids = new ArrayList<>();
        int seq = 0;
        for (int i = 0; i < steps; i++) {
            seq += random.nextInt(10) == 0 ? 2 : 1; // now and then a gap
            String stepId = projectId + "-s" + i;
            String dependsOn = switch (random.nextInt(10)) {
                case 0 -> ids.isEmpty() ? "{}" : "{\"cohort\":\"" + ids.get(random.nextInt(ids.size())) + "\"}";
                case 1 -> ids.isEmpty() ? "{}" : "{\"cohort\":\"" + ids.get(0) + "\",\"variables\":\"" + ids.get(ids.size() - 1) + "\"}";
                case 2 -> "{\"cohort\":\"" + projectId + "-s" + (i + 1) + "\"}"; // a later step
                case 3 -> "{\"cohort\":\"unknown\"}";
                case 4 -> "{\"cohort\":\"p" + (n - 1) + "-s0\"}"; // a step of another project
                default -> "{}";
            };
            try (PreparedStatement p = c.prepareStatement("INSERT INTO fed_step (step_id, project_id, seq, kind, definition, "
                    + "depends_on, checksum, origin, created_at) VALUES (?, ?, ?, 'cohort', '{}', ?, 'x', ?, now())")) {
                p.setString(1, stepId);
                p.setString(2, projectId);
                p.setInt(3, seq);
                p.setString(4, dependsOn);
                p.setString(5, random.nextInt(12) == 0 ? "n-other" : INITIATOR);
                p.executeUpdate();
            }
            String state = i < succeededBefore && random.nextInt(6) != 0 ? "SUCCEEDED"
                    : i == succeededBefore && random.nextInt(3) != 0 ? "QUEUED" : STATES[random.nextInt(STATES.length)];
            if (state != null) {
                execution(c, projectId, stepId, SELF, state, random.nextInt(4), random.nextInt(5));
            }
            if (random.nextBoolean()) { // as the initiator keeps every node's: never this node's to claim
                execution(c, projectId, stepId, "n-peer", random.nextBoolean() ? "QUEUED" : "SUCCEEDED", 0, 1);
            }
            ids.add(stepId);
        }
        return new Case(projectId, ids);
    }

    private static void execution(Connection c, String projectId, String stepId, String node, String status, int attempts,
            int version) throws SQLException {
        try (PreparedStatement p = c.prepareStatement("INSERT INTO fed_execution (step_id, node_id, project_id, status, "
                + "attempts, version, retryable, queued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, FALSE, now(), now())")) {
            p.setString(1, stepId);
            p.setString(2, node);
            p.setString(3, projectId);
            p.setString(4, status);
            p.setInt(5, attempts);
            p.setInt(6, version);
            p.executeUpdate();
        }
    }

    @Test
    void theStatementClaimsExactlyTheStepTheRulesPickFromItsRead() throws Exception {
        Random random = new Random(20261207);
        int claims = 0;
        int none = 0;
        try (Connection c = pg.getConnection()) {
            c.setAutoCommit(false);
            for (int n = 0; n < 300; n++) {
                Case k = generate(c, random, n);
                Instant now = Executions.now();
                StepRunner.ClaimRead read = StepRunner.readForClaim(c, k.projectId(), SELF, now);
                Optional<Projects.Step> rules = StepRunner.firstRunnable(read.project(), read.steps(), read.mine(), MAPPER);
                String where = "case " + n + ": " + read.steps().stream().map(s -> s.seq() + ":" + s.origin() + ":" + s.dependsOn()
                        + ":" + Optional.ofNullable(read.mine().get(s.stepId())).map(e -> e.status().name()).orElse("-")).toList()
                        + " project " + read.project().localStatus();
                assertEquals(rules.map(Projects.Step::stepId).orElse(null), read.claimedInStatement(), where);
                for (String stepId : k.stepIds()) {
                    Executions.Execution before = read.mine().get(stepId);
                    Executions.Execution after = row(c, stepId);
                    if (stepId.equals(read.claimedInStatement())) {
                        claims++;
                        // written as a claim of its own (Executions.transition to RUNNING) writes it
                        assertEquals(Executions.claimedRow(before, now), after, where);
                    } else {
                        assertEquals(before, after, where + ": step " + stepId + " changed without being claimed");
                    }
                }
                if (read.claimedInStatement() == null) {
                    none++;
                }
                try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM fed_execution WHERE node_id = 'n-peer' "
                        + "AND project_id = ? AND status = 'RUNNING'")) {
                    q.setString(1, k.projectId());
                    try (var rs = q.executeQuery()) {
                        rs.next();
                        assertEquals(0, rs.getInt(1), where + ": another node's execution claimed");
                    }
                }
            }
            c.rollback();
        }
        // both outcomes were exercised many times (the generator's shapes, not luck)
        assertTrue(claims >= 40, "claims: " + claims); // 56 with this seed
        assertTrue(none >= 40, "no claim: " + none);
    }

    @Test
    void aStepClaimedByAnotherTransactionWhileTheStatementRunsIsNotClaimedTwice() throws Exception {
        Case k;
        try (Connection c = pg.getConnection()) {
            c.setAutoCommit(false);
            k = generateQueuedFirst(c, "raced");
            c.commit();
        }
        String stepId = k.stepIds().get(0);
        ExecutorService other = Executors.newSingleThreadExecutor();
        try (Connection first = pg.getConnection(); Connection second = pg.getConnection()) {
            first.setAutoCommit(false);
            second.setAutoCommit(false);
            // the first claims it and has not committed when the second's statement reads (the step still QUEUED to it)
            assertEquals(stepId, StepRunner.readForClaim(first, k.projectId(), SELF, Executions.now()).claimedInStatement());
            Future<StepRunner.ClaimRead> racing = other.submit(() -> StepRunner.readForClaim(second, k.projectId(), SELF,
                    Executions.now()));
            Thread.sleep(300); // the second statement now waits for the first's lock on the row
            first.commit();
            StepRunner.ClaimRead read = racing.get(10, TimeUnit.SECONDS);
            assertEquals(Executions.Status.QUEUED, read.mine().get(stepId).status(), "its read is from before the first's commit");
            assertNull(read.claimedInStatement(), "the row changed since that read: not claimed again");
            second.commit();
            Executions.Execution row = row(second, stepId);
            assertEquals(Executions.Status.RUNNING, row.status());
            assertEquals(1, row.attempts(), "one claim, one attempt");
        } finally {
            other.shutdownNow();
        }
    }

    /** This node's execution of the step as stored now (null if none). */
    private static Executions.Execution row(Connection c, String stepId) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT " + Executions.COLUMNS_OF_E + " FROM fed_execution e "
                + "WHERE e.step_id = ? AND e.node_id = ?")) {
            q.setString(1, stepId);
            q.setString(2, SELF);
            try (var rs = q.executeQuery()) {
                return rs.next() ? Executions.read(rs) : null;
            }
        }
    }

    private static Case generateQueuedFirst(Connection c, String projectId) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("INSERT INTO fed_project (project_id, title, initiator, sharing_level, invited, local_status, created_at) "
                    + "VALUES ('" + projectId + "', 't', '" + INITIATOR + "', 'aggregate-only', '[]', 'ACCEPTED', now())");
            s.execute("INSERT INTO fed_step (step_id, project_id, seq, kind, definition, depends_on, checksum, origin, created_at) "
                    + "VALUES ('" + projectId + "-s0', '" + projectId + "', 1, 'cohort', '{}', '{}', 'x', '" + INITIATOR + "', now())");
        }
        execution(c, projectId, projectId + "-s0", SELF, "QUEUED", 0, 0);
        return new Case(projectId, List.of(projectId + "-s0"));
    }
}
