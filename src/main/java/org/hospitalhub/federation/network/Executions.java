package org.hospitalhub.federation.network;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;

import org.hospitalhub.delivery.Database;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The status of each step on each node (table {@code fed_execution}): this node's own executions, and on the initiator
 * what every participant reported. A change of this node's own execution is reported to the initiator (a
 * {@code step-status} message through the outbox, in the same transaction) and pushed to local subscribers.
 */
@ApplicationScoped
public class Executions {

    public enum Status {
        QUEUED,
        RUNNING,
        SUCCEEDED,
        FAILED
    }

    public record Execution(String projectId, String stepId, String nodeId, Status status, String reason, int attempts,
            int version, boolean retryable, Instant queuedAt, Instant startedAt, Instant finishedAt, Long durationMs,
            Instant nextRetryAt, Instant updatedAt) {
    }

    private static final String COLUMNS = "project_id, step_id, node_id, status, reason, attempts, version, retryable, "
            + "queued_at, started_at, finished_at, duration_ms, next_retry_at, updated_at";

    private final NodeIdentity identity;
    private final FederationOutbox outbox;
    private final StatusFeed feed;
    private final ObjectMapper mapper;

    /** Field-injected: the runner depends on this class too. */
    @Inject
    StepRunner runner;

    public Executions(NodeIdentity identity, FederationOutbox outbox, StatusFeed feed, ObjectMapper mapper) {
        this.identity = identity;
        this.outbox = outbox;
        this.feed = feed;
        this.mapper = mapper;
    }

    public Optional<Execution> find(Connection c, String stepId, String nodeId) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT " + COLUMNS + " FROM fed_execution WHERE step_id = ? AND node_id = ?")) {
            q.setString(1, stepId);
            q.setString(2, nodeId);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? Optional.of(read(rs)) : Optional.empty();
            }
        }
    }

    public List<Execution> ofProject(Connection c, String projectId) throws SQLException {
        List<Execution> out = new ArrayList<>();
        try (PreparedStatement q = c.prepareStatement("SELECT " + COLUMNS + " FROM fed_execution WHERE project_id = ? "
                + "ORDER BY step_id, node_id")) {
            q.setString(1, projectId);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(read(rs));
                }
            }
        }
        return out;
    }

    static Execution read(ResultSet rs) throws SQLException {
        return read(rs, 0);
    }

    /** The columns of {@link #COLUMNS_OF_E} read after the first {@code skip} ones. */
    static Execution read(ResultSet rs, int skip) throws SQLException {
        return new Execution(rs.getString(skip + 1), rs.getString(skip + 2), rs.getString(skip + 3),
                Status.valueOf(rs.getString(skip + 4)), rs.getString(skip + 5), rs.getInt(skip + 6), rs.getInt(skip + 7),
                rs.getBoolean(skip + 8), instant(rs, skip + 9), instant(rs, skip + 10), instant(rs, skip + 11),
                (Long) rs.getObject(skip + 12, Long.class), instant(rs, skip + 13), instant(rs, skip + 14));
    }

    /** An execution's columns as {@link #read(ResultSet, int)} reads them, from the table aliased {@code e}. */
    static final String COLUMNS_OF_E = "e." + COLUMNS.replace(", ", ", e.");

    private static Instant instant(ResultSet rs, int i) throws SQLException {
        OffsetDateTime t = rs.getObject(i, OffsetDateTime.class);
        return t == null ? null : t.toInstant();
    }

    /**
     * This node received a step: queued (once; a duplicate step changes nothing). The row as written, or empty if it
     * was there already (read back it would cost a round trip).
     */
    Optional<Execution> queue(Connection c, String projectId, String stepId) throws SQLException {
        Instant now = Instant.now().truncatedTo(ChronoUnit.MICROS); // as the database keeps it
        try (PreparedStatement ins = c.prepareStatement(QUEUE + "VALUES (?, ?, ?, 'QUEUED', 0, 1, TRUE, ?, ?) "
                + "ON CONFLICT DO NOTHING")) {
            ins.setString(1, stepId);
            ins.setString(2, identity.nodeId());
            ins.setString(3, projectId);
            ins.setObject(4, Database.utc(now));
            ins.setObject(5, Database.utc(now));
            if (ins.executeUpdate() != 1) {
                return Optional.empty();
            }
        }
        return Optional.of(queuedNow(projectId, stepId, now));
    }

    /** A first execution row, queued: step_id, node_id, project_id, status, attempts, version, retryable, queued_at, updated_at. */
    private static final String QUEUE = "INSERT INTO fed_execution (step_id, node_id, project_id, status, attempts, version, "
            + "retryable, queued_at, updated_at) ";

    Execution queuedNow(String projectId, String stepId, Instant now) {
        return new Execution(projectId, stepId, identity.nodeId(), Status.QUEUED, null, 0, 1, true, now, null, null, null,
                null, now);
    }

    /**
     * What a received step found here: its project's initiator and this node's decision (null if its invitation has
     * not arrived), the step stored before under its id or its number (null if none), and its execution queued now
     * (empty if the step was not stored).
     */
    record Received(String initiator, String localStatus, String existingStepId, String existingProjectId,
            String existingChecksum, Optional<Execution> queued) {
    }

    /**
     * A step received from {@code origin}: the checks the receiver makes (its project's initiator, the step id received
     * before or another step under its number) read, and the step stored with its execution queued if none of them
     * stands in the way (no step there yet; the project unknown so far or initiated by {@code origin}), in one statement:
     * on a receiving node busy with its own queries each round trip delays the step's start. The caller refuses what
     * the checks say (which rolls the transaction back).
     */
    Received receive(Connection c, Projects.Step step, String origin) throws SQLException {
        Instant now = Instant.now().truncatedTo(ChronoUnit.MICROS); // as the database keeps it
        try (PreparedStatement q = c.prepareStatement("WITH chk AS (SELECT p.initiator, p.local_status, s.step_id, "
                + "s.project_id, s.checksum FROM (SELECT 1) one LEFT JOIN fed_project p ON p.project_id = ? "
                + "LEFT JOIN LATERAL (SELECT step_id, project_id, checksum FROM fed_step WHERE step_id = ? OR (project_id = ? "
                + "AND seq = ?) ORDER BY step_id = ? DESC LIMIT 1) s ON TRUE), "
                + "stored AS (INSERT INTO fed_step (" + Projects.STEP_ROW + ") SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? FROM chk "
                + "WHERE chk.step_id IS NULL "
                + "AND (chk.initiator IS NULL OR chk.initiator = ?) RETURNING step_id), "
                + "queued AS (" + QUEUE + "SELECT step_id, ?, ?, 'QUEUED', 0, 1, TRUE, ?, ? FROM stored "
                + "ON CONFLICT DO NOTHING RETURNING 1) "
                + "SELECT chk.initiator, chk.local_status, chk.step_id, chk.project_id, chk.checksum, "
                + "(SELECT COUNT(*) FROM queued) FROM chk")) {
            String projectId = step.projectId();
            q.setString(1, projectId);
            q.setString(2, step.stepId());
            q.setString(3, projectId);
            q.setInt(4, step.seq());
            q.setString(5, step.stepId());
            int i = Projects.bindStep(q, 6, step);
            q.setString(i++, origin);
            q.setString(i++, identity.nodeId());
            q.setString(i++, projectId);
            q.setObject(i++, Database.utc(now));
            q.setObject(i, Database.utc(now));
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return new Received(rs.getString(1), rs.getString(2), rs.getString(3), rs.getString(4), rs.getString(5),
                        rs.getLong(6) == 1 ? Optional.of(queuedNow(projectId, step.stepId(), now)) : Optional.empty());
            }
        }
    }

    /**
     * Writes a new state of this node's own execution (version + 1) if it is still in {@code expected}, and reports it
     * to the initiator with the result, if any. Returns the new state, or empty when the row was not in that state.
     */
    public Optional<Execution> transition(Connection c, String stepId, Status expected, Status to, String reason,
            boolean countAttempt, boolean retryable, Instant nextRetryAt, JsonNode result) throws SQLException {
        return transition(c, stepId, expected, to, reason, countAttempt, retryable, nextRetryAt, result, null);
    }

    /**
     * As above, an outcome's duration counted from {@code ranFrom} (see
     * {@link #transition(Connection, Execution, Status, String, boolean, boolean, Instant, JsonNode, Instant)}).
     */
    Optional<Execution> transition(Connection c, String stepId, Status expected, Status to, String reason,
            boolean countAttempt, boolean retryable, Instant nextRetryAt, JsonNode result, Instant ranFrom) throws SQLException {
        Optional<Execution> before = find(c, stepId, identity.nodeId());
        if (before.isEmpty() || before.get().status() != expected) {
            return Optional.empty();
        }
        return transition(c, before.get(), to, reason, countAttempt, retryable, nextRetryAt, result, ranFrom);
    }

    /**
     * As {@link #transition(Connection, String, Status, Status, String, boolean, boolean, Instant, JsonNode)} from a
     * state the caller has just read or written (one round trip less): empty if the row is no longer that version.
     */
    Optional<Execution> transition(Connection c, Execution current, Status to, String reason, boolean countAttempt,
            boolean retryable, Instant nextRetryAt, JsonNode result) throws SQLException {
        return transition(c, current, to, reason, countAttempt, retryable, nextRetryAt, result, null);
    }

    /**
     * As above; an outcome's duration ({@code duration_ms}) is counted from {@code ranFrom}, when the runner began the
     * step (removing earlier results included), if given, else from {@code started_at}. A step is RUNNING from its claim,
     * which may be made by the transaction that received it, before that transaction's last statements and commit: its
     * duration is the node's own work, not those.
     */
    Optional<Execution> transition(Connection c, Execution current, Status to, String reason, boolean countAttempt,
            boolean retryable, Instant nextRetryAt, JsonNode result, Instant ranFrom) throws SQLException {
        String stepId = current.stepId();
        Status expected = current.status();
        Instant now = Instant.now().truncatedTo(ChronoUnit.MICROS); // as the database keeps it
        Long duration = null;
        String set = switch (to) {
            case QUEUED -> "queued_at = ?, started_at = NULL, finished_at = NULL, duration_ms = NULL";
            case RUNNING -> "started_at = ?, finished_at = NULL, duration_ms = NULL";
            case SUCCEEDED, FAILED -> "finished_at = ?, duration_ms = ?";
        };
        if (to == Status.SUCCEEDED || to == Status.FAILED) {
            duration = durationMs(current, ranFrom, now);
        }
        boolean withDuration = to == Status.SUCCEEDED || to == Status.FAILED;
        try (PreparedStatement up = c.prepareStatement("UPDATE fed_execution SET status = ?, reason = ?, version = version + 1, "
                + "attempts = attempts + ?, retryable = ?, next_retry_at = ?, updated_at = ?, " + set
                + " WHERE step_id = ? AND node_id = ? AND status = ? AND version = ?"
                // a step starts only in a project accepted here (a claim may rest on what was read before)
                + (to == Status.RUNNING ? " AND EXISTS (SELECT 1 FROM fed_project p WHERE p.project_id = fed_execution.project_id "
                        + "AND p.local_status = 'ACCEPTED')" : ""))) {
            int i = 1;
            up.setString(i++, to.name());
            up.setString(i++, reason);
            up.setInt(i++, countAttempt ? 1 : 0);
            up.setBoolean(i++, retryable);
            up.setObject(i++, nextRetryAt == null ? null : Database.utc(nextRetryAt));
            up.setObject(i++, Database.utc(now));
            up.setObject(i++, Database.utc(now));
            if (withDuration) {
                up.setObject(i++, duration);
            }
            up.setString(i++, stepId);
            up.setString(i++, identity.nodeId());
            up.setString(i++, expected.name());
            up.setInt(i++, current.version());
            if (up.executeUpdate() != 1) {
                return Optional.empty();
            }
        }
        // the row as just written (reading it back would cost a round trip, milliseconds each on a loaded database)
        Execution e = written(current, to, reason, countAttempt, retryable, nextRetryAt, now, duration);
        report(c, e, result);
        return Optional.of(e);
    }

    /**
     * The SET list of a claim (QUEUED to RUNNING, an attempt counted) in an {@code UPDATE fed_execution x} of its own
     * (parameters: updated_at, started_at): what {@link #transition} writes for it, and {@link #claimed} returns.
     */
    static final String CLAIM_SET = "status = 'RUNNING', reason = NULL, version = x.version + 1, attempts = x.attempts + 1, "
            + "retryable = TRUE, next_retry_at = NULL, updated_at = ?, started_at = ?, finished_at = NULL, duration_ms = NULL";

    /** Now, as the database keeps it (microseconds). */
    static Instant now() {
        return Instant.now().truncatedTo(ChronoUnit.MICROS);
    }

    /**
     * {@code queued} as a statement with {@link #CLAIM_SET} (at {@code now}) has just claimed it, reported as
     * {@link #transition} reports a claim.
     */
    Execution claimed(Connection c, Execution queued, Instant now) throws SQLException {
        Execution e = claimedRow(queued, now);
        report(c, e, null);
        return e;
    }

    /** The row {@code queued} becomes by a claim at {@code now}, as {@link #CLAIM_SET} and {@link #transition} write it. */
    static Execution claimedRow(Execution queued, Instant now) {
        return written(queued, Status.RUNNING, null, true, true, null, now, null);
    }

    /** An outcome's duration at {@code now}: from {@code ranFrom} if given (and after the claim), else from the claim. */
    private static Long durationMs(Execution current, Instant ranFrom, Instant now) {
        Instant from = ranFrom != null && current.startedAt() != null && ranFrom.isAfter(current.startedAt()) ? ranFrom
                : current.startedAt();
        return from == null ? null : java.time.Duration.between(from, now).toMillis();
    }

    /** The row {@code current} becomes by a transition to {@code to} at {@code now}, as written. */
    private static Execution written(Execution b, Status to, String reason, boolean countAttempt, boolean retryable,
            Instant nextRetryAt, Instant now, Long duration) {
        boolean withDuration = to == Status.SUCCEEDED || to == Status.FAILED;
        return new Execution(b.projectId(), b.stepId(), b.nodeId(), to, reason, b.attempts() + (countAttempt ? 1 : 0),
                b.version() + 1, retryable, to == Status.QUEUED ? now : b.queuedAt(),
                to == Status.QUEUED ? null : to == Status.RUNNING ? now : b.startedAt(), withDuration ? now : null,
                withDuration ? duration : null, nextRetryAt, now);
    }

    /**
     * This node's step {@code done} succeeded (its duration from {@code ranFrom}, as {@link #transition(Connection,
     * Execution, Status, String, boolean, boolean, Instant, JsonNode, Instant)}) and, if {@code next} is given, the
     * project's next step is claimed (RUNNING, an attempt counted, only while the project is accepted here), each a
     * compare-and-set on the version the caller holds. Each is reported, the success first. Returns what was written:
     * the success (empty if its row changed meanwhile) and the claim (empty if it did not take, or none was asked).
     * <p>
     * On PostgreSQL both are one statement sent {@link Database#ahead} of the transaction's last one (the outbox
     * batch that carries these reports, and the COMMIT): between two steps of a study, and between a study's last
     * step and its result reaching the initiator, every round trip on a loaded node costs tenths of a second. Both are
     * then returned as written, and the statement fails the transaction if either does not take (its rows changed
     * while the step ran: the caller records the success alone, as when any part of that transaction fails).
     * Elsewhere one after the other, at once.
     */
    List<Optional<Execution>> succeedAndClaim(Connection c, Execution done, JsonNode result, Instant ranFrom, Execution next)
            throws SQLException {
        if (!Database.isPostgres(c)) {
            Optional<Execution> succeeded = transition(c, done, Status.SUCCEEDED, null, false, false, null, result, ranFrom);
            return List.of(succeeded, succeeded.isEmpty() || next == null ? Optional.empty()
                    : transition(c, next, Status.RUNNING, null, true, true, null, null));
        }
        Instant now = now();
        Long duration = durationMs(done, ranFrom, now);
        List<Execution> rows = next == null ? List.of(done) : List.of(done, next);
        List<Status> to = next == null ? List.of(Status.SUCCEEDED) : List.of(Status.SUCCEEDED, Status.RUNNING); // a claim: an attempt, retryable
        String what = next == null ? "the success of step " + done.stepId()
                : "the success of step " + done.stepId() + " with the claim of step " + next.stepId();
        Database.ahead(c, new Database.Ahead("WITH up AS (UPDATE fed_execution e SET status = v.status, reason = NULL, "
                + "version = e.version + 1, attempts = e.attempts + v.inc, retryable = v.retryable, next_retry_at = NULL, "
                + "updated_at = ?, started_at = CASE WHEN v.status = 'RUNNING' THEN ? ELSE e.started_at END, "
                + "finished_at = CASE WHEN v.status = 'SUCCEEDED' THEN ? END, "
                + "duration_ms = CASE WHEN v.status = 'SUCCEEDED' THEN ?::bigint END "
                + "FROM unnest(?::varchar[], ?::varchar[], ?::varchar[], ?::int[], ?::int[], ?::boolean[]) "
                + "AS v(step_id, expected, status, version, inc, retryable) "
                + "WHERE e.step_id = v.step_id AND e.node_id = ? AND e.status = v.expected AND e.version = v.version "
                + "AND (v.status <> 'RUNNING' OR EXISTS (SELECT 1 FROM fed_project p WHERE p.project_id = e.project_id "
                + "AND p.local_status = 'ACCEPTED')) RETURNING e.step_id) "
                // every row written, or an error that fails the transaction (its COMMIT, sent after it, then not run)
                + "SELECT CAST(CASE WHEN COUNT(*) = ? THEN '0' ELSE ? END AS int) FROM up", (up, i) -> {
                    up.setObject(i++, Database.utc(now));
                    up.setObject(i++, Database.utc(now));
                    up.setObject(i++, Database.utc(now));
                    up.setObject(i++, duration);
                    up.setArray(i++, c.createArrayOf("varchar", rows.stream().map(Execution::stepId).toArray()));
                    up.setArray(i++, c.createArrayOf("varchar", rows.stream().map(e -> e.status().name()).toArray()));
                    up.setArray(i++, c.createArrayOf("varchar", to.stream().map(Status::name).toArray()));
                    up.setArray(i++, c.createArrayOf("int4", rows.stream().map(Execution::version).toArray()));
                    up.setArray(i++, c.createArrayOf("int4", to.stream().map(t -> t == Status.RUNNING ? 1 : 0).toArray()));
                    up.setArray(i++, c.createArrayOf("bool", to.stream().map(t -> t == Status.RUNNING).toArray()));
                    up.setString(i++, identity.nodeId());
                    up.setInt(i++, rows.size());
                    up.setString(i++, what + " not recorded: this node's execution changed while it ran");
                    return i;
                }));
        Execution succeeded = written(done, Status.SUCCEEDED, null, false, false, null, now, duration);
        report(c, succeeded, result);
        if (next == null) {
            return List.of(Optional.of(succeeded), Optional.empty());
        }
        Execution running = claimedRow(next, now);
        report(c, running, null);
        return List.of(Optional.of(succeeded), Optional.of(running));
    }

    /**
     * Sends this node's execution state (and result) to the project's initiator; the initiator itself stores it. A
     * step of this node's just queued is started at once: claimed in the caller's transaction if it can be (its
     * RUNNING report then follows this one in the same batch), else by the runner woken after the commit.
     */
    void report(Connection c, Execution e, JsonNode result) throws SQLException {
        report(c, e, result, null);
    }

    /**
     * As {@link #report(Connection, Execution, JsonNode)}, for a step just received ({@code received}, the step of
     * {@code e}): if a step of its project is running here, the runner is handed it after the commit, to claim it with
     * that one's success, instead of being woken.
     */
    void report(Connection c, Execution e, JsonNode result, Projects.Step received) throws SQLException {
        send(c, e, result);
        if (e.status() == Status.QUEUED && e.nodeId().equals(identity.nodeId())) {
            String projectId = e.projectId();
            if (!runner.claimWith(c, projectId)) {
                Database.afterCommit(() -> {
                    if (received == null || !runner.receivedWhileHeld(projectId, received, e)) {
                        runner.wake(projectId); // run it now rather than at the runner's next poll
                    }
                });
            }
        }
    }

    private void send(Connection c, Execution e, JsonNode result) throws SQLException {
        String initiator = initiatorOf(c, e.projectId());
        if (initiator == null) {
            return; // a step of a project whose invitation has not arrived: reported once accepted
        }
        if (initiator.equals(identity.nodeId())) {
            if (result != null) {
                storeResult(c, e.projectId(), e.stepId(), e.nodeId(), result);
            } else if (e.status() != Status.SUCCEEDED && !(e.status() == Status.QUEUED && e.version() == 1)) {
                deleteResult(c, e.stepId(), e.nodeId()); // run again: the earlier result no longer stands (a first queueing has none)
            }
            Database.afterCommit(() -> feed.publish(e)); // pushed once it is true, not before a rollback
            return;
        }
        ObjectNode p = mapper.createObjectNode();
        p.put("stepId", e.stepId());
        p.put("node", e.nodeId());
        p.put("status", e.status().name());
        p.put("reason", e.reason());
        p.put("attempts", e.attempts());
        p.put("version", e.version());
        p.put("queuedAt", e.queuedAt() == null ? null : e.queuedAt().toString());
        p.put("startedAt", e.startedAt() == null ? null : e.startedAt().toString());
        p.put("finishedAt", e.finishedAt() == null ? null : e.finishedAt().toString());
        if (e.durationMs() != null) {
            p.put("durationMs", e.durationMs());
        }
        if (result != null) {
            p.set("result", result);
        }
        outbox.enqueue(c, initiator, Messages.STEP_STATUS, e.projectId(), p);
        Database.afterCommit(() -> feed.publish(e));
    }

    /** A participant's report as received (times as they were sent, checked to be instants). */
    private record Report(String projectId, String node, String stepId, Status status, String reason, int attempts,
            int version, String queuedAt, String startedAt, String finishedAt, Long durationMs, String result) {

        /** One execution's reports share it. */
        String key() {
            return key(stepId, node);
        }

        static String key(String stepId, String node) {
            return stepId + "\n" + node;
        }

        Execution written(Instant now) {
            return new Execution(projectId, stepId, node, status, reason, attempts, version, true, instant(queuedAt),
                    instant(startedAt), instant(finishedAt), durationMs, null, now);
        }

        private static Instant instant(String t) {
            return t == null ? null : Instant.parse(t);
        }
    }

    /**
     * On the initiator: a participant's report, applied unless an equal or newer one was. In a transaction the reports
     * of all its messages (a transmission's) are applied together just before it commits, by one statement: every round
     * trip of a loaded initiator delays the reports behind it.
     */
    void applyReport(Connection c, String projectId, String node, JsonNode p) throws SQLException {
        Status status = Status.valueOf(p.path("status").asText());
        Report r = new Report(projectId, node, p.path("stepId").asText(), status,
                p.hasNonNull("reason") ? p.get("reason").asText() : null, p.path("attempts").asInt(), p.path("version").asInt(),
                checkedTime(p, "queuedAt"), checkedTime(p, "startedAt"), checkedTime(p, "finishedAt"),
                p.hasNonNull("durationMs") ? p.get("durationMs").asLong() : null,
                status == Status.SUCCEEDED && p.has("result") ? p.get("result").toString() : null);
        Reports batch = Database.beforeCommit(c, this, Reports::new);
        if (batch == null) {
            applyReports(c, List.of(r));
        } else {
            // of several reports of one execution in a transaction the newest stands (each supersedes the one before)
            batch.reports.merge(r.key(), r, (x, y) -> y.version() > x.version() ? y : x);
        }
    }

    /** The reports of one transaction not yet applied, one per execution. */
    private final class Reports implements Database.BeforeCommit {
        final Map<String, Report> reports = new LinkedHashMap<>();

        @Override
        public void run(Connection c) throws SQLException {
            applyReports(c, List.copyOf(reports.values()));
        }
    }

    /**
     * Applies reports of distinct executions in one statement: each as the execution's first report or over an older
     * one (neither when an equal or newer report was applied; a participant's row here is only ever written by its
     * reports), its result stored in place of an earlier one if it brings one, and the earlier result removed if the
     * step no longer stands succeeded (run again). Each change is pushed to the status feed after the commit.
     */
    private void applyReports(Connection c, List<Report> rs) throws SQLException {
        Instant now = Instant.now().truncatedTo(ChronoUnit.MICROS); // as the database keeps it
        Map<String, Report> byKey = new LinkedHashMap<>();
        // the transaction's commit with it when it is its last work (the reports of a received transmission)
        try (PreparedStatement up = c.prepareStatement(Database.committing(c, "WITH r AS (SELECT * FROM unnest(?::varchar[], ?::varchar[], ?::int[], "
                + "?::int[], ?::timestamptz[], ?::timestamptz[], ?::timestamptz[], ?::bigint[], ?::varchar[], ?::varchar[], "
                + "?::varchar[], ?::varchar[]) AS r(status, reason, attempts, version, queued_at, started_at, finished_at, "
                + "duration_ms, step_id, node_id, project_id, result)), "
                + "up AS (INSERT INTO fed_execution (status, reason, attempts, version, queued_at, started_at, finished_at, "
                + "duration_ms, updated_at, step_id, node_id, project_id, retryable) SELECT status, reason, attempts, version, "
                + "queued_at, started_at, finished_at, duration_ms, ?, step_id, node_id, project_id, TRUE FROM r "
                + "ON CONFLICT (step_id, node_id) DO UPDATE SET "
                + "status = EXCLUDED.status, reason = EXCLUDED.reason, attempts = EXCLUDED.attempts, version = EXCLUDED.version, "
                + "queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, "
                + "duration_ms = EXCLUDED.duration_ms, updated_at = EXCLUDED.updated_at "
                + "WHERE fed_execution.version < EXCLUDED.version RETURNING step_id, node_id, (xmax = 0) AS first), "
                + "stored AS (INSERT INTO fed_result (step_id, node_id, project_id, result, received_at) "
                + "SELECT r.step_id, r.node_id, r.project_id, r.result, ? FROM up JOIN r ON r.step_id = up.step_id "
                + "AND r.node_id = up.node_id WHERE r.result IS NOT NULL " + RESULT_REPLACES + "), "
                + "removed AS (DELETE FROM fed_result f USING up JOIN r ON r.step_id = up.step_id AND r.node_id = up.node_id "
                + "WHERE f.step_id = up.step_id AND f.node_id = up.node_id AND r.status <> 'SUCCEEDED' AND NOT up.first) "
                + "SELECT step_id, node_id FROM up"))) {
            up.setArray(1, c.createArrayOf("varchar", rs.stream().map(r -> r.status().name()).toArray()));
            up.setArray(2, c.createArrayOf("varchar", rs.stream().map(Report::reason).toArray()));
            up.setArray(3, c.createArrayOf("int4", rs.stream().map(Report::attempts).toArray()));
            up.setArray(4, c.createArrayOf("int4", rs.stream().map(Report::version).toArray()));
            up.setArray(5, c.createArrayOf("varchar", rs.stream().map(Report::queuedAt).toArray()));
            up.setArray(6, c.createArrayOf("varchar", rs.stream().map(Report::startedAt).toArray()));
            up.setArray(7, c.createArrayOf("varchar", rs.stream().map(Report::finishedAt).toArray()));
            up.setArray(8, c.createArrayOf("int8", rs.stream().map(Report::durationMs).toArray()));
            up.setArray(9, c.createArrayOf("varchar", rs.stream().map(Report::stepId).toArray()));
            up.setArray(10, c.createArrayOf("varchar", rs.stream().map(Report::node).toArray()));
            up.setArray(11, c.createArrayOf("varchar", rs.stream().map(Report::projectId).toArray()));
            up.setArray(12, c.createArrayOf("varchar", rs.stream().map(Report::result).toArray()));
            up.setObject(13, Database.utc(now));
            up.setObject(14, Database.utc(Instant.now()));
            for (Report r : rs) {
                byKey.put(r.key(), r);
            }
            up.execute(); // its first result: the rows written (a COMMIT after it has none)
            try (ResultSet applied = up.getResultSet()) {
                while (applied.next()) { // the rows as just written (read back they would cost a round trip)
                    Execution written = byKey.get(Report.key(applied.getString(1), applied.getString(2))).written(now);
                    Database.afterCommit(() -> feed.publish(written));
                }
            }
        }
    }

    private static final Instant FIRST = Instant.parse("0001-01-01T00:00:00Z");
    private static final Instant LAST = Instant.parse("9999-12-31T23:59:59.999999Z");

    /** A report's time field: null, or an instant of the years 1-9999 as canonical text (else the report is refused). */
    private static String checkedTime(JsonNode p, String field) {
        if (!p.hasNonNull(field)) {
            return null;
        }
        String t = p.get(field).asText();
        try {
            Instant i = Instant.parse(t);
            if (!i.isBefore(FIRST) && !i.isAfter(LAST)) {
                return i.toString();
            }
        } catch (java.time.format.DateTimeParseException e) {
            // refused below
        }
        throw new Inbox.Refusal(400, "payload." + field, "must be an instant of the years 1-9999 (ISO-8601, UTC), not '"
                + (t.length() > 40 ? t.substring(0, 40) + "…" : t) + "'");
    }

    /** How a node's result of a step replaces an earlier one (a step run again), for each statement that stores one. */
    private static final String RESULT_REPLACES = "ON CONFLICT (step_id, node_id) DO UPDATE SET project_id = EXCLUDED.project_id, "
            + "result = EXCLUDED.result, received_at = EXCLUDED.received_at";

    /** The node's result of the step, in place of an earlier one (one statement: it ends a study's critical path). */
    private void storeResult(Connection c, String projectId, String stepId, String node, JsonNode result) throws SQLException {
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_result (step_id, node_id, project_id, result, received_at) "
                + "VALUES (?, ?, ?, ?, ?) " + RESULT_REPLACES)) {
            ins.setString(1, stepId);
            ins.setString(2, node);
            ins.setString(3, projectId);
            ins.setString(4, result.toString());
            ins.setObject(5, Database.utc(Instant.now()));
            ins.executeUpdate();
        }
    }

    private static void deleteResult(Connection c, String stepId, String node) throws SQLException {
        try (PreparedStatement d = c.prepareStatement("DELETE FROM fed_result WHERE step_id = ? AND node_id = ?")) {
            d.setString(1, stepId);
            d.setString(2, node);
            d.executeUpdate();
        }
    }

    /** A project's initiator never changes: looked up once per project and process (bounded), not at every report. */
    private static final java.util.Map<String, String> INITIATORS = Lru.of(10_000);

    /**
     * The initiator of a project stored or read by the caller's transaction, remembered once it has committed (a step
     * received after its invitation then reports without looking it up).
     */
    static void initiatorStored(String projectId, String initiator) {
        if (projectId != null && initiator != null) {
            Database.afterCommit(() -> INITIATORS.putIfAbsent(projectId, initiator));
        }
    }

    /**
     * The initiator of a project this node is creating (its id made here, never used by another): remembered at once,
     * so that the reports of the creating transaction's own steps need no lookup either. Should that transaction roll
     * back, the entry names a project that does not exist and is never asked for.
     */
    static void initiatorCreated(String projectId, String initiator) {
        INITIATORS.put(projectId, initiator);
    }

    static String initiatorOf(Connection c, String projectId) throws SQLException {
        String known = INITIATORS.get(projectId);
        if (known != null) {
            return known;
        }
        try (PreparedStatement q = c.prepareStatement("SELECT initiator FROM fed_project WHERE project_id = ?")) {
            q.setString(1, projectId);
            try (ResultSet rs = q.executeQuery()) {
                if (!rs.next()) {
                    return null; // not arrived yet: asked again next time
                }
                INITIATORS.put(projectId, rs.getString(1));
                return rs.getString(1);
            }
        }
    }
}
