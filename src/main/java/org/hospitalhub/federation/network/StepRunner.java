package org.hospitalhub.federation.network;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Instance;
import jakarta.inject.Named;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.Leases;
import org.hospitalhub.federation.StepContext;
import org.hospitalhub.federation.StepDefinitionException;
import org.hospitalhub.federation.StepExecutor;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/**
 * Executes the steps this node received, asynchronously (route {@code federation-step-runner}): only for projects this
 * node accepted; per project strictly in the initiator's order (a step starts once every earlier step of the project has
 * been received and has finished, and the steps it depends on succeeded here); projects in parallel on a bounded pool,
 * so a long query of one study delays no other. Before every run the step's earlier results are removed
 * ({@link StepExecutor#clean}), so a re-execution is idempotent. A failure is retried automatically with backoff up to
 * {@code hub.federation.steps.max-attempts}; an invalid definition is not retried; an operator or the initiator can
 * ask for a retry through the API. Each state change is reported to the initiator.
 */
@ApplicationScoped
@Named("federationSteps")
public class StepRunner {

    private static final Logger LOG = Logger.getLogger(StepRunner.class);
    static final String LEASE = "federation-steps";

    private final Database db;
    private final Leases leases;
    private final NodeIdentity identity;
    private final Executions executions;
    private final Instance<StepExecutor> executors;
    private final ObjectMapper mapper;
    private final MeterRegistry meters;
    private final int maxAttempts;
    private final Duration retryDelay;
    private final Duration retryMaxDelay;
    private final ExecutorService pool;
    private final ExecutorService waker = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "federation-step-wake");
        t.setDaemon(true);
        return t;
    });
    private final Set<String> runningProjects = ConcurrentHashMap.newKeySet();
    /** Projects a wake-up found held by another thread: the holder looks again when it lets go. */
    private final Set<String> lookAgain = ConcurrentHashMap.newKeySet();
    /**
     * Steps received (and committed) while a step of their project ran here, by project: the runner takes them into
     * what its claim read when that step succeeds ({@link #takeIn}), so that the next one is claimed by the statement
     * that records the success, as in a plan, instead of by a read and a claim after it (a study posted step by step).
     */
    private final Map<String, Queue<Received>> receivedWhileHeld = new ConcurrentHashMap<>();

    private record Received(Projects.Step step, Executions.Execution execution) {
    }

    public StepRunner(Database db, Leases leases, NodeIdentity identity, Executions executions, Instance<StepExecutor> executors,
            ObjectMapper mapper, MeterRegistry meters,
            @ConfigProperty(name = "hub.federation.steps.threads", defaultValue = "4") int threads,
            @ConfigProperty(name = "hub.federation.steps.max-attempts", defaultValue = "3") int maxAttempts,
            @ConfigProperty(name = "hub.federation.steps.retry-delay", defaultValue = "10s") Duration retryDelay,
            @ConfigProperty(name = "hub.federation.steps.retry-max-delay", defaultValue = "10m") Duration retryMaxDelay) {
        this.db = db;
        this.leases = leases;
        this.identity = identity;
        this.executions = executions;
        this.executors = executors;
        this.mapper = mapper;
        this.meters = meters;
        this.maxAttempts = Math.max(1, maxAttempts);
        this.retryDelay = retryDelay;
        this.retryMaxDelay = retryMaxDelay;
        this.pool = Executors.newFixedThreadPool(Math.max(1, threads), r -> {
            Thread t = new Thread(r, "federation-step");
            t.setDaemon(true);
            return t;
        });
    }

    /**
     * A step of the project was queued on this node (received, accepted, or re-queued for a retry) and committed:
     * claim it now on the wake-up thread instead of at the next poll. Same rules as {@link #dispatch}.
     */
    void wake(String projectId) {
        if (!identity.enabled()) {
            return;
        }
        try {
            waker.execute(() -> startNext(projectId));
        } catch (RejectedExecutionException e) {
            // shutting down: the step stays QUEUED for the next start
        }
    }

    /**
     * A step of the project was queued in the caller's transaction on {@code c} (received, accepted, or re-queued):
     * the project's next step is claimed by that same transaction, just before it commits (so that every step it
     * stores is known to the claim: a plan's steps then follow each other from what that claim read), and runs on the
     * pool once it has committed, instead of a wake-up claiming it in a transaction of its own after the commit (on a
     * node busy with its queries each hand-over and round trip delays the start of a study by tenths of a second).
     * Same rules as {@link #dispatch}: under the lease, in order, dependencies met, one step of a project at a time.
     * False when it did not take that on (not in a transaction on {@code c}, lease not held, or a step of the project
     * is running or being claimed here): the caller wakes the runner after the commit as before. Should the
     * transaction roll back, so does the claim, and the project is let go; a failing claim fails the transaction.
     */
    boolean claimWith(Connection c, String projectId) throws SQLException {
        if (!identity.enabled() || !Database.inTransactionOn(c)) {
            return false;
        }
        ClaimAtCommit key = new ClaimAtCommit(projectId);
        if (Database.deferred(c, key)) {
            return true; // this transaction claims the project's next step at its commit already
        }
        String self = identity.nodeId();
        try {
            if (!holdLease(self)) {
                return false;
            }
        } catch (SQLException e) {
            return false;
        }
        if (!runningProjects.add(projectId)) {
            return false;
        }
        lookAgain.remove(projectId); // this looks (as startNextStep does)
        Database.afterRollback(() -> release(projectId));
        Database.beforeCommit(c, key, () -> cc -> {
            // a failing statement fails the transaction with it; the project is let go after the rollback
            Optional<Claimed> claimed = claimNext(cc, projectId, self);
            Database.afterCommit(() -> {
                if (claimed.isEmpty()) {
                    release(projectId);
                    return;
                }
                try {
                    pool.execute(() -> run(claimed.get()));
                } catch (RejectedExecutionException e) {
                    release(projectId); // shutting down: the step stays RUNNING and is queued again at the next start
                }
            });
        });
        return true;
    }

    /** The key of a claim deferred to a transaction's commit ({@link #claimWith}). */
    private record ClaimAtCommit(String projectId) {
    }

    @PreDestroy
    void stop() throws InterruptedException {
        waker.shutdownNow();
        pool.shutdownNow();
        pool.awaitTermination(5, TimeUnit.SECONDS);
    }

    /** One pass: due retries re-queued, then the next runnable step of each accepted project started. */
    public void dispatch() throws SQLException {
        if (!identity.enabled()) {
            return;
        }
        String self = identity.nodeId();
        if (!holdLease(self)) {
            return;
        }
        // the failed steps due for an automatic retry and the accepted projects with a queued step: one query (every
        // second on every node); a step re-queued here is claimed by the transaction that re-queues it, or woken after
        List<String> retries = new ArrayList<>();
        List<String> projects = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT 'retry', step_id FROM fed_execution "
                + "WHERE node_id = ? AND status = 'FAILED' AND retryable AND next_retry_at <= ? UNION ALL SELECT DISTINCT 'queued', "
                + "e.project_id FROM fed_execution e JOIN fed_project p ON p.project_id = e.project_id WHERE e.node_id = ? "
                + "AND e.status = 'QUEUED' AND p.local_status = 'ACCEPTED'")) {
            q.setString(1, self);
            q.setObject(2, Database.utc(Instant.now()));
            q.setString(3, self);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    ("retry".equals(rs.getString(1)) ? retries : projects).add(rs.getString(2));
                }
            }
        }
        for (String stepId : retries) {
            db.inTransaction(c -> executions.transition(c, stepId, Executions.Status.FAILED, Executions.Status.QUEUED,
                    "automatic retry", false, true, null, null));
        }
        for (String projectId : projects) {
            startNextStep(projectId, self);
        }
    }

    /** Holds or renews the runner's lease; on taking it over, first re-queues the steps the previous holder left running. */
    private boolean holdLease(String self) throws SQLException {
        Leases.Hold hold = leases.hold(LEASE);
        if (hold == Leases.Hold.ACQUIRED) {
            requeueInterrupted(self);
        }
        return hold.held();
    }

    /** Claims the project's next runnable step, if any and none of it is running here, and runs it on the pool. */
    private void startNextStep(String projectId, String self) throws SQLException {
        while (!runningProjects.add(projectId)) {
            // a step of it is running or being claimed: whoever holds it looks again when it lets go (a step committed
            // after its last look would otherwise wait for the next tick)
            lookAgain.add(projectId);
            if (runningProjects.contains(projectId)) {
                return;
            }
        }
        lookAgain.remove(projectId);
        boolean started = false;
        try {
            Optional<Claimed> claimed = db.inTransaction(c -> claimNext(c, projectId, self));
            if (claimed.isPresent()) {
                pool.execute(() -> run(claimed.get()));
                started = true;
            }
        } finally {
            if (!started) {
                release(projectId);
            }
        }
    }

    /** Lets go of the project; if a step of it was queued meanwhile, looks again (at once, on the wake-up thread). */
    private void release(String projectId) {
        runningProjects.remove(projectId);
        boolean received = receivedWhileHeld.remove(projectId) != null; // not taken in: looked at afresh
        if (received || lookAgain.contains(projectId)) {
            wake(projectId);
        }
    }

    /**
     * A step of this node's, queued by a transaction that has committed, whose project was held here then: handed to
     * the holder ({@link #takeIn}). False when the project is not held (any more): the caller wakes the runner as
     * before. Either way the step is looked at: by the holder when its step succeeds, or when it lets the project go.
     */
    boolean receivedWhileHeld(String projectId, Projects.Step s, Executions.Execution e) {
        if (!identity.enabled() || !runningProjects.contains(projectId)) {
            return false;
        }
        receivedWhileHeld.computeIfAbsent(projectId, k -> new ConcurrentLinkedQueue<>()).add(new Received(s, e));
        return runningProjects.contains(projectId); // let go meanwhile: its release may have looked before this was added
    }

    /**
     * The steps received while {@code claimed}'s project ran, put into what its claim read: each that follows the last
     * step known (by number), with its queued execution. One that does not (a gap: an earlier step not received yet) is
     * left to a fresh read once the project is let go.
     */
    private void takeIn(Claimed claimed) {
        String projectId = claimed.step().projectId();
        Queue<Received> q = receivedWhileHeld.remove(projectId);
        if (q == null) {
            return;
        }
        List<Received> got = new ArrayList<>(q);
        got.sort(Comparator.comparingInt(r -> r.step().seq()));
        for (Received r : got) {
            if (claimed.mine().containsKey(r.step().stepId())) {
                continue; // known already
            }
            List<Projects.Step> steps = claimed.steps();
            int last = steps.isEmpty() ? 0 : steps.get(steps.size() - 1).seq();
            if (r.step().seq() != last + 1) {
                lookAgain.add(projectId);
                continue;
            }
            steps.add(r.step());
            claimed.mine().put(r.step().stepId(), r.execution());
        }
    }

    /**
     * A step claimed to run, with what its claim read: the project's steps in order and this node's executions of them
     * (its own outcomes put in as they are recorded), so that the step after it is claimed without reading them again.
     */
    private record Claimed(Projects.Project project, Projects.Step step, Executions.Execution execution, List<Projects.Step> steps,
            Map<String, Executions.Execution> mine) {
    }

    /**
     * The next step of the project, if it may start now, switched to RUNNING. The project, its steps and this node's
     * executions of them are read in one statement: on a node busy with its queries every round trip costs
     * milliseconds, and this stands between one step of a study and the next. On PostgreSQL that statement also makes
     * the claim ({@link #CLAIM_FIRST_RUNNABLE}): the read and the switch in one round trip, not two. What it read is
     * still checked here by the same rules; the claim it made must be the one those rules pick (else the transaction
     * fails, logged as an error).
     */
    private Optional<Claimed> claimNext(Connection c, String projectId, String self) throws SQLException {
        Instant now = Executions.now();
        ClaimRead read = readForClaim(c, projectId, self, now);
        Optional<Projects.Step> runnable = firstRunnable(read.project(), read.steps(), read.mine(), mapper);
        String claimed = read.claimedInStatement();
        if (claimed != null && (runnable.isEmpty() || !runnable.get().stepId().equals(claimed))) {
            // the statement's conditions are these rules in SQL: a difference is a defect, and the claim must not stand;
            // the transaction fails as on a database error (a receipt answers 503 and is sent again), and it is logged
            String problem = "project " + projectId + ": the claim statement took step " + claimed + " where the rules "
                    + "pick " + runnable.map(Projects.Step::stepId).orElse("none") + " from its read; claim undone";
            LOG.error(problem);
            throw new SQLException(problem);
        }
        if (runnable.isEmpty()) {
            return Optional.empty();
        }
        Projects.Step s = runnable.get();
        Map<String, Executions.Execution> mine = read.mine();
        Executions.Execution queued = mine.get(s.stepId());
        Optional<Executions.Execution> running = claimed != null ? Optional.of(executions.claimed(c, queued, now))
                // H2, or (PostgreSQL) the row changed between the read and the claim: a claim of its own
                : executions.transition(c, queued, Executions.Status.RUNNING, null, true, true, null, null);
        return running.map(r -> {
            mine.put(s.stepId(), r);
            return new Claimed(read.project(), s, r, read.steps(), mine);
        });
    }

    /**
     * What a claim read: the project (null if unknown here), its steps in order, this node's executions of them (as
     * they were before the statement's claim), and the step that statement claimed (PostgreSQL; null if none, and
     * always on other databases).
     */
    record ClaimRead(Projects.Project project, List<Projects.Step> steps, Map<String, Executions.Execution> mine,
            String claimedInStatement) {
    }

    /** The read of {@link #claimNext}, with its claim on PostgreSQL ({@link #CLAIM_FIRST_RUNNABLE}, at {@code now}). */
    static ClaimRead readForClaim(Connection c, String projectId, String self, Instant now) throws SQLException {
        Projects.Project project = null;
        List<Projects.Step> steps = new ArrayList<>();
        Map<String, Executions.Execution> mine = new LinkedHashMap<>();
        boolean postgres = Database.isPostgres(c);
        String claimed = null;
        String read = "SELECT " + Projects.PROJECT_COLUMNS + ", " + Projects.STEP_COLUMNS + ", " + Executions.COLUMNS_OF_E
                + (postgres ? ", (SELECT step_id FROM claim)" : "") + " FROM fed_project p LEFT JOIN fed_step s ON "
                + "s.project_id = p.project_id LEFT JOIN fed_execution e ON e.step_id = s.step_id AND e.node_id = ? "
                + "WHERE p.project_id = ? ORDER BY s.seq";
        try (PreparedStatement q = c.prepareStatement(postgres ? CLAIM_FIRST_RUNNABLE + read : read)) {
            int i = 1;
            if (postgres) {
                q.setString(i++, self);
                q.setString(i++, projectId);
                q.setObject(i++, Database.utc(now)); // updated_at
                q.setObject(i++, Database.utc(now)); // started_at
                q.setString(i++, self);
                q.setString(i++, projectId);
            }
            q.setString(i++, self);
            q.setString(i++, projectId);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    if (project == null) {
                        project = Projects.project(rs, 0);
                        claimed = postgres ? rs.getString(33) : null;
                    }
                    if (rs.getString(10) != null) {
                        Projects.Step s = Projects.step(rs, 9);
                        steps.add(s);
                        if (rs.getString(19) != null) {
                            mine.put(s.stepId(), Executions.read(rs, 18));
                        }
                    }
                }
            }
        }
        return new ClaimRead(project, steps, mine, claimed);
    }

    /**
     * The step the rules let start now, from what a claim read: the project accepted here; its steps numbered 1, 2, …
     * from its initiator; the first that has not succeeded here is queued here (none running or failed before it) and
     * the steps it depends on have succeeded here. Empty if there is none.
     */
    static Optional<Projects.Step> firstRunnable(Projects.Project project, List<Projects.Step> steps,
            Map<String, Executions.Execution> mine, ObjectMapper mapper) {
        if (project == null || !"ACCEPTED".equals(project.localStatus())) {
            return Optional.empty();
        }
        int expected = 1;
        for (Projects.Step s : steps) {
            if (s.seq() != expected++) {
                return Optional.empty(); // an earlier step has not arrived yet: wait for it
            }
            if (!s.origin().equals(project.initiator())) {
                return Optional.empty();
            }
            Executions.Execution e = mine.get(s.stepId());
            if (e == null) {
                return Optional.empty();
            }
            switch (e.status()) {
                case SUCCEEDED -> {
                    continue;
                }
                case RUNNING, FAILED -> {
                    return Optional.empty();
                }
                case QUEUED -> {
                    return dependenciesSucceeded(s, mine, null, mapper) ? Optional.of(s) : Optional.empty();
                }
            }
        }
        return Optional.empty();
    }

    /**
     * PostgreSQL: the claim made by the statement that reads the project for {@link #claimNext}, as a data-modifying
     * {@code WITH} before that read (which sees the rows as they were before it, as the rules need). The rules of
     * {@link #firstRunnable} in SQL: the first step of the project (by number) that has not succeeded here, if every
     * step before it is numbered in turn, from the initiator and succeeded here, it is from the initiator, queued here
     * (the version read: a row changed meanwhile is not taken), the project accepted here and every step it depends on
     * a step of the project that succeeded here. Switched as {@link Executions#claimed} writes it. Parameters: node,
     * project, now (updated_at), now (started_at), node, project.
     */
    private static final String CLAIM_FIRST_RUNNABLE = "WITH first AS (SELECT s.step_id, s.seq, s.origin, s.depends_on, "
            + "e.version FROM fed_step s LEFT JOIN fed_execution e ON e.step_id = s.step_id AND e.node_id = ? "
            + "WHERE s.project_id = ? AND e.status IS DISTINCT FROM 'SUCCEEDED' ORDER BY s.seq LIMIT 1), "
            + "claim AS (UPDATE fed_execution x SET " + Executions.CLAIM_SET + " FROM first f, fed_project fp "
            + "WHERE x.step_id = f.step_id AND x.node_id = ? AND x.status = 'QUEUED' AND x.version = f.version "
            + "AND fp.project_id = ? AND fp.local_status = 'ACCEPTED' AND f.origin = fp.initiator "
            + "AND (SELECT COUNT(*) FROM fed_step b WHERE b.project_id = fp.project_id AND b.seq < f.seq) = f.seq - 1 "
            + "AND NOT EXISTS (SELECT 1 FROM fed_step b LEFT JOIN fed_execution be ON be.step_id = b.step_id "
            + "AND be.node_id = x.node_id WHERE b.project_id = fp.project_id AND b.seq < f.seq "
            + "AND (b.origin <> fp.initiator OR be.status IS DISTINCT FROM 'SUCCEEDED')) "
            + "AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(f.depends_on::jsonb) d WHERE NOT EXISTS (SELECT 1 "
            + "FROM fed_step ds JOIN fed_execution de ON de.step_id = ds.step_id AND de.node_id = x.node_id "
            + "WHERE ds.step_id = d.value AND ds.project_id = fp.project_id AND de.status = 'SUCCEEDED')) "
            + "RETURNING x.step_id) ";

    /**
     * The project's step after {@code done}'s, from what the claim of {@code done} read, if it may start once that
     * succeeds: the next number, received from the initiator, queued here, its dependencies succeeded here ({@code done}
     * counted as succeeded). Null when no such step was known then (the caller reads again if one was queued
     * meanwhile); empty when it is known but cannot start yet.
     */
    private Optional<Projects.Step> knownNext(Claimed done) {
        List<Projects.Step> steps = done.steps();
        int at = steps.indexOf(done.step());
        if (at < 0 || at + 1 >= steps.size()) {
            return null;
        }
        Projects.Step s = steps.get(at + 1);
        Executions.Execution e = done.mine().get(s.stepId());
        if (s.seq() != done.step().seq() + 1 || !s.origin().equals(done.project().initiator()) || e == null
                || e.status() != Executions.Status.QUEUED) {
            return null;
        }
        return dependenciesSucceeded(s, done.mine(), done.step().stepId(), mapper) ? Optional.of(s) : Optional.empty();
    }

    /** Whether every step {@code s} depends on succeeded here ({@code succeeding}, if given, counted as succeeded). */
    private static boolean dependenciesSucceeded(Projects.Step s, Map<String, Executions.Execution> mine, String succeeding,
            ObjectMapper mapper) {
        for (Iterator<JsonNode> it = dependencies(s, mapper).elements(); it.hasNext();) {
            String dep = it.next().asText();
            Executions.Execution d = mine.get(dep);
            if (!dep.equals(succeeding) && (d == null || d.status() != Executions.Status.SUCCEEDED)) {
                return false;
            }
        }
        return true;
    }

    private static JsonNode dependencies(Projects.Step s, ObjectMapper mapper) {
        try {
            return mapper.readTree(s.dependsOn());
        } catch (Exception e) {
            return mapper.createObjectNode();
        }
    }

    /**
     * Runs the claimed step and, while the project's next step can start at once, that one on this thread too: the
     * step's outcome and the next step's claim are one transaction, so a study's steps follow each other without a
     * commit, a hand-over and a fresh read in between.
     */
    private void run(Claimed claimed) {
        String projectId = claimed.step().projectId();
        Claimed current = claimed;
        try {
            while (current != null) {
                Optional<Claimed> following = runOne(current);
                current = following == null ? null : following.orElse(null);
                if (current == null && following != null) {
                    current = claimAgain(projectId);
                }
                if (current != null && Thread.currentThread().isInterrupted()) {
                    // shutting down: the claimed step stays RUNNING and is queued again when the runner next starts
                    LOG.infof("Step %s of project %s not started: shutting down", current.step().stepId(), projectId);
                    break;
                }
            }
        } finally {
            release(projectId);
        }
    }

    /**
     * After a success that claimed no next step: if a step of the project was received or woken while it ran and not
     * taken in (its receipt committed after the success's transaction looked), its next step claimed here, the project
     * still held, instead of being let go and claimed by the wake-up thread (a hand-over that waits behind that
     * thread's other claims, tenths of a second on a busy node). Null if there is none to claim or the claim fails (the
     * project is then looked at when it is let go).
     */
    private Claimed claimAgain(String projectId) {
        boolean received = receivedWhileHeld.remove(projectId) != null;
        if (!lookAgain.remove(projectId) && !received) {
            return null;
        }
        try {
            String self = identity.nodeId();
            return holdLease(self) ? db.inTransaction(c -> claimNext(c, projectId, self)).orElse(null) : null;
        } catch (SQLException | RuntimeException e) {
            LOG.debugf("Project %s: the next step is looked at when the project is let go: %s", projectId, e.toString());
            lookAgain.add(projectId);
            return null;
        }
    }

    /**
     * Runs one step. Returns, after a success, the project's next step claimed in the same transaction as the outcome
     * (empty if none could start), or null after a failure.
     */
    private Optional<Claimed> runOne(Claimed claimed) {
        Projects.Step s = claimed.step();
        Optional<Claimed> following = null;
        Instant ranFrom = null;
        String outcome = "failed";
        Timer.Sample sample = Timer.start(meters);
        try {
            StepExecutor executor = executors.isResolvable() ? executors.get() : null;
            if (executor == null) {
                finish(s, Executions.Status.FAILED, "this node has no StepExecutor (data side not installed)", false, null);
                return null;
            }
            Map<String, String> deps = new LinkedHashMap<>();
            dependencies(s, mapper).fields().forEachRemaining(e -> deps.put(e.getKey(), e.getValue().asText()));
            StepContext ctx = new StepContext(s.projectId(), s.stepId(), s.kind(), mapper.readTree(s.definition()),
                    claimed.project().sharingLevel(), deps);
            ranFrom = Instant.now(); // the step's duration: from here (it may have been claimed while its receipt committed)
            try {
                executor.clean(s.projectId(), s.stepId()); // leftovers of an earlier, interrupted or failed attempt
                JsonNode result = executor.execute(ctx);
                following = succeed(claimed, result == null ? mapper.nullNode() : result, ranFrom);
                outcome = "succeeded";
            } catch (StepDefinitionException e) {
                String cleanProblem = cleanQuietly(executor, s);
                finish(s, Executions.Status.FAILED, "invalid definition at " + e.field() + ": " + e.getMessage() + cleanProblem,
                        false, null, null, ranFrom);
            } catch (Exception e) {
                String cleanProblem = cleanQuietly(executor, s);
                int attempts = claimed.execution().attempts();
                boolean retry = attempts < maxAttempts;
                String reason = String.valueOf(e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage()) + cleanProblem
                        + (retry ? " (attempt " + attempts + " of " + maxAttempts + ", retried automatically)"
                                : " (attempt " + attempts + " of " + maxAttempts + ", no more automatic retries)");
                LOG.warnf("Step %s of project %s failed on this node: %s", s.stepId(), s.projectId(), reason);
                finish(s, Executions.Status.FAILED, reason, retry, null, retry ? Instant.now().plus(delay(attempts)) : null, ranFrom);
            }
        } catch (Exception e) {
            LOG.errorf(e, "Step %s of project %s: cannot record its outcome (it is re-run after a restart)", s.stepId(), s.projectId());
        } finally {
            sample.stop(meters.timer("hub.federation.step.duration", "kind", s.kind(), "outcome", outcome));
        }
        return following;
    }

    /**
     * Records the step's success and, if this node still holds the runner's lease, claims the project's next step in
     * the same transaction when it is known to be runnable. Should that transaction fail, the success is recorded
     * alone and the next step is looked at once it has committed ({@link #claimAgain}).
     */
    private Optional<Claimed> succeed(Claimed claimed, JsonNode result, Instant ranFrom) throws SQLException {
        String self = identity.nodeId();
        boolean lease;
        try {
            lease = holdLease(self);
        } catch (SQLException e) {
            lease = false;
        }
        if (lease) {
            try {
                return db.inTransaction(c -> {
                    String projectId = claimed.step().projectId();
                    takeIn(claimed);
                    Optional<Projects.Step> next = knownNext(claimed);
                    if (next != null && next.isPresent()) {
                        // the success and the next step's claim, from what the first claim read: one statement
                        Projects.Step s = next.get();
                        List<Optional<Executions.Execution>> written = executions.succeedAndClaim(c, claimed.execution(), result,
                                ranFrom, claimed.mine().get(s.stepId()));
                        if (written.get(0).isEmpty()) {
                            throw new IllegalStateException("its execution changed while it ran");
                        }
                        claimed.mine().put(claimed.step().stepId(), written.get(0).get());
                        if (written.get(1).isEmpty()) {
                            return claimNext(c, projectId, self); // the claim did not take: read again
                        }
                        claimed.mine().put(s.stepId(), written.get(1).get());
                        return Optional.of(new Claimed(claimed.project(), s, written.get(1).get(), claimed.steps(), claimed.mine()));
                    }
                    Optional<Executions.Execution> done = executions.succeedAndClaim(c, claimed.execution(), result, ranFrom,
                            null).get(0);
                    if (done.isEmpty()) {
                        throw new IllegalStateException("its execution changed while it ran");
                    }
                    claimed.mine().put(claimed.step().stepId(), done.get());
                    // the next step known but unable to start yet, or none known: one queued meanwhile (a wake-up found
                    // the project held) is claimed once this has committed (claimAgain), so that the success and its
                    // report are not held back by a read
                    return Optional.<Claimed>empty();
                });
            } catch (SQLException | RuntimeException e) {
                LOG.debugf("Step %s: recording its success with the next step's claim failed, recorded alone: %s",
                        claimed.step().stepId(), e.toString());
                lookAgain.add(claimed.step().projectId()); // steps it took in (takeIn) are looked at when it is let go
            }
        }
        finish(claimed.step(), Executions.Status.SUCCEEDED, null, false, result, null, ranFrom);
        return Optional.empty();
    }

    /**
     * Starts the project's next step at once if it became runnable, instead of at the next tick: a study's steps run
     * back to back on each node (a fan-out's overhead is mostly such waits). Same rules as {@link #dispatch}: under the
     * lease, in order, dependencies met.
     */
    private void startNext(String projectId) {
        try {
            String self = identity.nodeId();
            if (holdLease(self)) {
                startNextStep(projectId, self);
            }
        } catch (Exception e) {
            LOG.debugf("Project %s: the next step waits for the next tick: %s", projectId, e.toString());
        }
    }

    Duration delay(int attempts) {
        Duration d = retryDelay.multipliedBy(1L << Math.min(20, Math.max(0, attempts - 1)));
        return d.compareTo(retryMaxDelay) > 0 ? retryMaxDelay : d;
    }

    private void finish(Projects.Step s, Executions.Status to, String reason, boolean retryable, JsonNode result)
            throws SQLException {
        finish(s, to, reason, retryable, result, null);
    }

    private void finish(Projects.Step s, Executions.Status to, String reason, boolean retryable, JsonNode result, Instant retryAt)
            throws SQLException {
        finish(s, to, reason, retryable, result, retryAt, null);
    }

    /** {@code ranFrom}: when this runner began the step (its duration is counted from there), or null. */
    private void finish(Projects.Step s, Executions.Status to, String reason, boolean retryable, JsonNode result, Instant retryAt,
            Instant ranFrom) throws SQLException {
        db.inTransaction(c -> executions.transition(c, s.stepId(), Executions.Status.RUNNING, to,
                reason == null ? null : reason.length() > 2000 ? reason.substring(0, 2000) : reason, false, retryable, retryAt,
                result, ranFrom));
    }

    private static String cleanQuietly(StepExecutor executor, Projects.Step s) {
        try {
            executor.clean(s.projectId(), s.stepId());
            return "";
        } catch (Exception e) {
            LOG.warnf("Step %s: removing its partial results failed (they are removed again before the next run): %s",
                    s.stepId(), e.getMessage());
            return "; removing partial results failed: " + e.getMessage();
        }
    }

    private void requeueInterrupted(String self) throws SQLException {
        for (String stepId : stepIds("SELECT step_id FROM fed_execution WHERE node_id = ? AND status = 'RUNNING'", self)) {
            String projectId = Projects.stepProject(db, stepId);
            if (projectId == null || runningProjects.contains(projectId)) {
                continue; // still running in this process (the lease lapsed and was taken back meanwhile)
            }
            db.inTransaction(c -> executions.transition(c, stepId, Executions.Status.RUNNING, Executions.Status.QUEUED,
                    "interrupted (node restarted or replica lost its lease): run again", false, true, null, null));
        }
    }

    private List<String> stepIds(String sql, String self) throws SQLException {
        List<String> ids = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(sql)) {
            q.setString(1, self);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    ids.add(rs.getString(1));
                }
            }
        }
        return ids;
    }
}
