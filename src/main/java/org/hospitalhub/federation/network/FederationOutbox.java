package org.hospitalhub.federation.network;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;
import jakarta.inject.Named;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.Leases;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.micrometer.core.instrument.MeterRegistry;

/**
 * The federation outbox (table {@code fed_outbox}). A message is written in the transaction of what it announces
 * (a step, an answer, a status) and sent later by {@link #sendDue()} (route {@code federation-outbox-sender}): per
 * destination strictly in id order, the next one only after the previous was acknowledged (except a study's steps,
 * which may follow the invitation or step before them at once on a direct link, see {@link Follower}), so a node
 * that is offline holds its queue and receives it in order when it returns. A failed send is retried with
 * exponential backoff (persisted, so it survives restarts); destinations are sent to in parallel, so one offline or
 * slow node delays no other. A message the receiver refuses for good (400, 403, 409, 422) is parked as DEAD with the
 * reason; the operator API resends it. Messages to a node go through the central hub node when
 * {@code hub.federation.relay-node} is set.
 */
@ApplicationScoped
@Named("federationOutbox")
public class FederationOutbox {

    private static final Logger LOG = Logger.getLogger(FederationOutbox.class);
    static final String LEASE = "federation-outbox";
    private static final Set<Integer> REFUSED_FOR_GOOD = Set.of(400, 403, 409, 413, 422);

    public record OutboxMessage(long id, String messageId, String destination, String type, String projectId, String status,
            int attempts, Instant nextAttemptAt, String lastError, Instant createdAt, Instant ackedAt) {
    }

    private final Database db;
    private final Leases leases;
    private final NodeIdentity identity;
    private final Messages messages;
    private final Peers peers;
    private final Optional<String> relayNode;
    private final Duration backoffInitial;
    private final Duration backoffMax;
    private final Duration requestTimeout;
    private final Duration nonceWindow;
    private final Duration rejectionsKept;
    private final int batchMaxMessages;
    private final long batchMaxBytes;
    private final ObjectMapper mapper;
    private final HttpClient http;
    private final ThreadPoolExecutor senders;
    private final Set<String> inFlight = ConcurrentHashMap.newKeySet();
    /** Destinations with a message committed since their drain began (see {@link #wake}). */
    private final Set<String> woken = ConcurrentHashMap.newKeySet();
    /** Per destination, the transmission under way when it carries a project's invitation or steps (see {@link Follower}). */
    private final Map<String, Follower> followers = new ConcurrentHashMap<>();
    private final MeterRegistry meters;
    /** Messages not yet acknowledged, per destination (0 rows: none pending anywhere). */
    private final io.micrometer.core.instrument.MultiGauge pending;
    private volatile Instant lastPurge = Instant.EPOCH;

    @Inject
    Inbox inbox;

    public FederationOutbox(Database db, Leases leases, NodeIdentity identity, Messages messages, Peers peers,
            MeterRegistry meters,
            @ConfigProperty(name = "hub.federation.relay-node") Optional<String> relayNode,
            @ConfigProperty(name = "hub.federation.outbox.backoff-initial", defaultValue = "1s") Duration backoffInitial,
            @ConfigProperty(name = "hub.federation.outbox.backoff-max", defaultValue = "5m") Duration backoffMax,
            @ConfigProperty(name = "hub.federation.outbox.connect-timeout", defaultValue = "3s") Duration connectTimeout,
            @ConfigProperty(name = "hub.federation.outbox.request-timeout", defaultValue = "30s") Duration requestTimeout,
            @ConfigProperty(name = "hub.federation.outbox.senders", defaultValue = "64") int senders,
            @ConfigProperty(name = "hub.federation.outbox.batch-max-messages", defaultValue = "100") int batchMaxMessages,
            @ConfigProperty(name = "hub.federation.outbox.batch-max-bytes", defaultValue = "262144") long batchMaxBytes,
            ObjectMapper mapper,
            @ConfigProperty(name = "hub.federation.max-clock-skew", defaultValue = "5m") Duration maxClockSkew,
            @ConfigProperty(name = "hub.federation.rejections-kept", defaultValue = "30d") Duration rejectionsKept) {
        this.db = db;
        this.leases = leases;
        this.identity = identity;
        this.messages = messages;
        this.peers = peers;
        this.meters = meters;
        this.pending = io.micrometer.core.instrument.MultiGauge.builder("hub.federation.outbox.pending")
                .description("Federation messages not yet acknowledged by their destination").register(meters);
        this.relayNode = relayNode.map(String::strip).filter(s -> !s.isEmpty());
        this.backoffInitial = backoffInitial;
        this.backoffMax = backoffMax;
        this.requestTimeout = requestTimeout;
        this.nonceWindow = maxClockSkew.multipliedBy(2);
        this.rejectionsKept = rejectionsKept;
        this.batchMaxMessages = Math.max(1, batchMaxMessages);
        this.batchMaxBytes = batchMaxBytes;
        this.mapper = mapper;
        this.http = HttpClient.newBuilder().connectTimeout(connectTimeout).version(HttpClient.Version.HTTP_1_1).build();
        // threads made when destinations are due and ended after a minute idle: a thread per destination being sent to,
        // up to hub.federation.outbox.senders; beyond that destinations take turns (see drain)
        ThreadPoolExecutor pool = new ThreadPoolExecutor(Math.max(1, senders), Math.max(1, senders), 60, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), r -> {
                    Thread t = new Thread(r, "federation-sender");
                    t.setDaemon(true);
                    return t;
                });
        pool.allowCoreThreadTimeOut(true);
        this.senders = pool;
    }

    @PreDestroy
    void stop() {
        senders.shutdownNow();
    }

    /** Writes a new message from this node to {@code destination} in the caller's transaction; to itself it applies at once. */
    public Messages.Message enqueue(Connection c, String destination, String type, String projectId, JsonNode payload)
            throws SQLException {
        return enqueueAll(c, List.of(destination), type, projectId, payload).get(0);
    }

    /**
     * The same payload as one message to each destination (an invitation, a step), in the caller's transaction: the
     * rows go to the database in one batch (one round trip however many destinations; on a loaded database each round
     * trip costs milliseconds), a message to this node itself is applied at once. The messages in the destinations' order.
     */
    public List<Messages.Message> enqueueAll(Connection c, List<String> destinations, String type, String projectId,
            JsonNode payload) throws SQLException {
        List<Messages.Message> sealed = new ArrayList<>(destinations.size());
        List<Messages.Message> out = new ArrayList<>(destinations.size());
        for (String destination : destinations) {
            Messages.Message m = messages.draft(type, destination, projectId, payload); // signed when sent
            out.add(m);
            if (destination.equals(identity.nodeId())) {
                inbox.applyLocal(c, m);
            } else {
                sealed.add(m);
            }
        }
        insert(c, sealed);
        return out;
    }

    /** A message of another node to pass on (this node is the central hub), in the caller's transaction. */
    void relay(Connection c, Messages.Message m) throws SQLException {
        insert(c, List.of(m));
    }

    /**
     * Rows for messages sealed for their destination ({@code m.to()}), each destination woken after the commit. In a
     * transaction ({@link Database#inTransaction}) the rows are written just before it commits, with every other
     * message of that transaction, in one batch and in the order they were written (a received plan's response and
     * its steps' reports, a finished step's report and its successor's: one round trip instead of one each).
     */
    private void insert(Connection c, List<Messages.Message> ms) throws SQLException {
        if (ms.isEmpty()) {
            return;
        }
        Pending pending = Database.beforeCommit(c, this, Pending::new);
        if (pending == null) {
            write(c, ms);
        } else {
            pending.messages.addAll(ms);
        }
    }

    /** The messages of one transaction not yet written. */
    private final class Pending implements Database.BeforeCommit {
        final List<Messages.Message> messages = new ArrayList<>();

        @Override
        public void run(Connection c) throws SQLException {
            write(c, messages);
        }

        @Override
        public boolean last() {
            return true; // after the other deferred work (a step claimed at the commit reports it): still one batch
        }
    }

    private void write(Connection c, List<Messages.Message> ms) throws SQLException {
        Instant now = Instant.now();
        if (Database.isPostgres(c)) {
            writeReturningHeads(c, ms, now);
            return;
        }
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_outbox (message_id, destination, message_type, "
                + "project_id, message, status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'PENDING', 0, ?, ?)")) {
            for (Messages.Message m : ms) {
                ins.setString(1, m.id());
                ins.setString(2, m.to());
                ins.setString(3, m.type());
                ins.setString(4, m.projectId());
                ins.setString(5, m.wire());
                ins.setObject(6, Database.utc(now));
                ins.setObject(7, Database.utc(now));
                ins.addBatch();
            }
            ins.executeBatch();
        }
        wakeAfterCommit(ms, Map.of());
    }

    /**
     * PostgreSQL: the rows in one statement, in the given order (ids follow it), with the commit when it is the
     * transaction's last work; the statement also says, per destination, whether any message was pending for it
     * before (committed then). If none was, these rows are its first pending ones: after the commit they are handed
     * to the sender as such ({@link #wake(String, List)}), which sends them without reading them back (one round trip
     * less on the way of every message to an idle destination, the usual case in a study).
     */
    private void writeReturningHeads(Connection c, List<Messages.Message> ms, Instant now) throws SQLException {
        Map<String, Messages.Message> byKey = new HashMap<>();
        for (Messages.Message m : ms) {
            byKey.put(m.to() + "\n" + m.id(), m);
        }
        Map<String, List<OutboxRow>> firsts = new LinkedHashMap<>();
        Database.executeCommitting(c, "WITH ins AS (INSERT INTO fed_outbox (message_id, "
                + "destination, message_type, project_id, message, status, attempts, next_attempt_at, created_at) "
                + "SELECT m.id, m.destination, m.type, m.project, m.message, 'PENDING', 0, ?, ? FROM unnest(?::varchar[], "
                + "?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[]) WITH ORDINALITY AS m(id, destination, type, "
                + "project, message, n) ORDER BY m.n RETURNING id, message_id, destination) "
                + "SELECT i.id, i.message_id, i.destination, EXISTS (SELECT 1 FROM fed_outbox o WHERE o.destination = "
                + "i.destination AND o.status = 'PENDING') FROM ins i ORDER BY i.id", (ins, i) -> {
                    ins.setObject(i++, Database.utc(now));
                    ins.setObject(i++, Database.utc(now));
                    ins.setArray(i++, c.createArrayOf("varchar", ms.stream().map(Messages.Message::id).toArray()));
                    ins.setArray(i++, c.createArrayOf("varchar", ms.stream().map(Messages.Message::to).toArray()));
                    ins.setArray(i++, c.createArrayOf("varchar", ms.stream().map(Messages.Message::type).toArray()));
                    ins.setArray(i++, c.createArrayOf("varchar", ms.stream().map(Messages.Message::projectId).toArray()));
                    ins.setArray(i++, c.createArrayOf("varchar", ms.stream().map(Messages.Message::wire).toArray()));
                    return i;
                }, rs -> { // the rows written (with the statements sent ahead of it, and a COMMIT after it, if any)
                    while (rs.next()) {
                        String destination = rs.getString(3);
                        if (rs.getBoolean(4)) { // the same for every row to that destination (one snapshot)
                            firsts.put(destination, null); // behind others: the sender reads its queue from the start, as always
                            continue;
                        }
                        Messages.Message m = byKey.get(destination + "\n" + rs.getString(2));
                        firsts.computeIfAbsent(destination, d -> new ArrayList<>()).add(new OutboxRow(rs.getLong(1), m.id(),
                                destination, m.type(), m.wire(), 0, now, m.projectId()));
                    }
                    return null;
                });
        wakeAfterCommit(ms, firsts);
    }

    /** Each destination of {@code ms} woken after the commit, with its first pending messages if {@code heads} has them. */
    private void wakeAfterCommit(List<Messages.Message> ms, Map<String, List<OutboxRow>> heads) {
        for (String destination : ms.stream().map(Messages.Message::to).distinct().toList()) {
            List<OutboxRow> rows = heads.get(destination);
            Database.afterCommit(() -> wake(destination, rows));
        }
    }

    /**
     * A message to {@code destination} was just committed: send it now instead of at the next poll (when this replica
     * holds the sender's lease; the poll remains for retries, backoff and the other replicas).
     */
    void wake(String destination) {
        wake(destination, null);
    }

    /**
     * As {@link #wake(String)}, with the destination's first pending messages when the committing transaction knows
     * them ({@code heads}, in id order; null: not known). They are sent without being read back unless a send to
     * the destination is under way (that one reads the queue when it has done).
     */
    void wake(String destination, List<OutboxRow> heads) {
        if (!identity.enabled() || !leases.hold(LEASE).held()) {
            return;
        }
        woken.add(destination);
        Follower follower = followers.get(destination);
        if (follower != null && follower.schedule()) {
            try {
                senders.execute(() -> follow(follower));
            } catch (RejectedExecutionException e) {
                // shutting down: not begun, nothing waits for it
            }
        }
        schedule(destination, heads);
    }

    /** One drain per destination at a time; a wake-up that arrives while one runs makes it go round again. */
    private void schedule(String destination) {
        schedule(destination, null);
    }

    private void schedule(String destination, List<OutboxRow> heads) {
        if (!inFlight.add(destination)) {
            return;
        }
        try {
            senders.execute(() -> {
                try {
                    woken.remove(destination);
                    drain(destination, heads);
                } catch (Exception e) {
                    LOG.warnf("Federation outbox to %s: %s", destination, e.getMessage());
                } finally {
                    inFlight.remove(destination);
                }
                if (woken.contains(destination)) {
                    schedule(destination);
                }
            });
        } catch (RejectedExecutionException e) {
            inFlight.remove(destination); // shutting down: the rows stay PENDING for the next start
        }
    }

    /** One pass: each destination with a due head message gets a sender (route federation-outbox-sender). */
    public void sendDue() throws SQLException {
        if (!identity.enabled() || !leases.hold(LEASE).held()) {
            return;
        }
        Instant now = Instant.now();
        purgeNonces(now);
        List<String> due = new ArrayList<>();
        List<io.micrometer.core.instrument.MultiGauge.Row<?>> rows = new ArrayList<>();
        // the gauge and the due destinations: one query (every second on every node)
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT destination, COUNT(*), MIN(next_attempt_at) FROM fed_outbox WHERE status = 'PENDING' GROUP BY destination");
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                rows.add(io.micrometer.core.instrument.MultiGauge.Row.of(
                        io.micrometer.core.instrument.Tags.of("destination", rs.getString(1)), rs.getLong(2)));
                if (!rs.getObject(3, OffsetDateTime.class).toInstant().isAfter(now)) {
                    due.add(rs.getString(1));
                }
            }
        }
        pending.register(rows, true);
        for (String destination : due) {
            schedule(destination);
        }
    }

    /**
     * Sends the destination's pending messages in order until one fails or is not yet due: those waiting together go
     * in one transmission (up to {@code hub.federation.outbox.batch-max-messages} and {@code batch-max-bytes}), the
     * receiver acknowledging each; if it refuses a batch as such (an older node, a smaller body limit), one at a time.
     */
    private void drain(String destination, List<OutboxRow> heads) throws SQLException {
        boolean singles = false;
        // read with the previous round's acknowledgements, or (first round) handed over by the transaction that wrote them
        List<OutboxRow> next = heads == null || heads.isEmpty() ? null
                : signedWithinBudget(heads.subList(0, Math.min(heads.size(), batchMaxMessages)));
        for (int round = 0; round < 500; round++) {
            List<OutboxRow> rows = next != null ? next : heads(destination, singles ? 1 : batchMaxMessages);
            next = null;
            if (rows.isEmpty() || rows.get(0).nextAttemptAt().isAfter(Instant.now())) {
                return;
            }
            // steps follow the message before them on a direct link only: a central hub passes messages on in the
            // order it stores them, and two transmissions under way to it at once may be stored in either order
            Follower follower = nextHop(destination).equals(destination) ? Follower.of(rows) : null;
            if (follower != null) {
                followers.put(destination, follower);
            }
            List<Outcome> outcomes;
            try {
                if (rows.size() == 1) {
                    outcomes = List.of(send(rows.get(0)));
                } else {
                    Optional<List<Outcome>> batch = sendBatch(rows);
                    if (batch.isEmpty()) {
                        singles = true;
                        continue;
                    }
                    outcomes = batch.get();
                }
            } finally {
                if (follower != null) {
                    followers.remove(destination, follower);
                    follower.close(); // its acknowledgements recorded before the queue is read again
                }
            }
            if (outcomes.stream().allMatch(o -> o.kind() == Kind.ACKED) && db.isPostgres()) {
                next = ackedThenHeads(rows.subList(0, outcomes.size()), destination, singles ? 1 : batchMaxMessages);
            } else {
                record(rows, outcomes);
            }
            for (int i = 0; i < outcomes.size(); i++) {
                OutboxRow row = rows.get(i);
                Outcome outcome = outcomes.get(i);
                meters.counter("hub.federation.messages.sent", "outcome", outcome.kind().name().toLowerCase()).increment();
                if (outcome.kind() == Kind.RETRY && (row.attempts() == 0 || row.attempts() % 10 == 0)) {
                    LOG.warnf("Federation message %s (%s) to %s not acknowledged (attempt %d), held with its successors: %s",
                            row.messageId(), row.type(), destination, row.attempts() + 1, outcome.error());
                }
                if (outcome.kind() == Kind.DEAD) {
                    LOG.errorf("Federation message %s (%s) to %s refused by the receiver, parked: %s", row.messageId(), row.type(),
                            destination, outcome.error());
                }
            }
            if (outcomes.get(outcomes.size() - 1).kind() == Kind.RETRY) {
                return;
            }
            if (!senders.getQueue().isEmpty()) {
                // other destinations wait for a thread (more of them than hub.federation.outbox.senders): take turns,
                // this destination goes round again after them instead of holding the thread while it has messages
                woken.add(destination);
                return;
            }
        }
    }

    /**
     * A study's steps need not wait for the round trip of the message before them: while a transmission carrying a
     * project's invitation or steps is under way to a destination, the steps of those projects queued for it next
     * (committed meanwhile, nothing else between) go in a second transmission at once, instead of one round trip to
     * the node later. A study posted step by step has its steps posted one after another just after the project; on a
     * loaded node each round trip takes a tenth of a second or more, and a node that has finished one step then waits
     * for the next. Only the initiator's steps travel so (a node's reports still gather while one transmission is under
     * way: session 26 of bench/README.md measured that sending those ahead costs more than it saves). The receiver
     * stores a step that arrives before its invitation or before the step it follows and runs it in order; it applies
     * a project's invitation and steps received at the same time one after the other ({@link Inbox#PROJECT_LOCK}).
     * Only to a destination sent to directly: through a central hub ({@code hub.federation.relay-node}) a step would
     * reach the hub in a transmission of its own, which the hub may store, and so pass on, before the invitation or
     * step under way before it (the hub keeps the order in which it stores messages, not the one they were sent in).
     * Only acknowledgements are recorded from the second transmission: a step it could not deliver is left pending,
     * due, and sent in order after the one before it as usual. At most one such transmission per transmission under
     * way; the drain waits for it to end before it reads the queue again, so the two never send a message twice.
     */
    static final class Follower {
        private final String destination;
        private final long after;
        private final List<String> projects;
        private boolean scheduled;
        private boolean begun;
        private boolean closed;
        private boolean done;

        private Follower(String destination, long after, List<String> projects) {
            this.destination = destination;
            this.after = after;
            this.projects = projects;
        }

        /** For a transmission of {@code rows} carrying invitations or steps; else null. */
        static Follower of(List<OutboxRow> rows) {
            List<String> projects = rows.stream().filter(r -> Messages.INVITATION.equals(r.type())
                    || Messages.STEP.equals(r.type())).map(OutboxRow::projectId).distinct().toList();
            return projects.isEmpty() ? null
                    : new Follower(rows.get(0).destination(), rows.get(rows.size() - 1).id(), projects);
        }

        /** True once: the transmission is still under way and no follower transmission was started for it. */
        synchronized boolean schedule() {
            if (closed || scheduled) {
                return false;
            }
            scheduled = true;
            return true;
        }

        /** True if the follower transmission may go (the one before it is still under way); then {@link #done} must follow. */
        synchronized boolean begin() {
            if (closed) {
                return false; // too late: the transmission before it has ended
            }
            begun = true;
            return true;
        }

        synchronized void done() {
            done = true;
            notifyAll();
        }

        /**
         * The transmission before it has ended: waits for a follower transmission that has begun (one still waiting
         * for a sender thread will not begin: the drain must not wait for a thread that drains may all be holding).
         */
        synchronized void close() {
            closed = true;
            boolean interrupted = false;
            while (begun && !done) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** The rows that follow {@code f}'s transmission: the steps of its projects queued next, in order. */
    private static final String FOLLOWING = "SELECT id, message_id, destination, message_type, message, attempts, "
            + "next_attempt_at, project_id FROM fed_outbox o WHERE destination = ? AND status = 'PENDING' AND id > ? "
            + "AND NOT EXISTS (SELECT 1 FROM fed_outbox x WHERE x.destination = o.destination AND x.status = 'PENDING' "
            + "AND x.id > ? AND x.id < o.id AND NOT (x.message_type = ? AND x.project_id = ANY(?))) "
            + "AND message_type = ? AND project_id = ANY(?) ORDER BY id LIMIT ?";

    /** Sends the rows that may follow {@code f}'s transmission, if any, recording those acknowledged. */
    private void follow(Follower f) {
        if (!f.begin()) {
            return;
        }
        try {
            List<OutboxRow> read;
            try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(FOLLOWING)) {
                java.sql.Array projects = c.createArrayOf("varchar", f.projects.toArray());
                q.setString(1, f.destination);
                q.setLong(2, f.after);
                q.setLong(3, f.after);
                q.setString(4, Messages.STEP);
                q.setArray(5, projects);
                q.setString(6, Messages.STEP);
                q.setArray(7, projects);
                q.setInt(8, batchMaxMessages);
                read = read(q);
            }
            Instant now = Instant.now();
            int due = 0;
            while (due < read.size() && !read.get(due).nextAttemptAt().isAfter(now)) {
                due++; // a step waiting out a backoff goes when it is due, in order
            }
            if (due == 0) {
                return;
            }
            List<OutboxRow> rows = signedWithinBudget(read.subList(0, due));
            List<Outcome> outcomes = rows.size() == 1 ? List.of(send(rows.get(0))) : sendBatch(rows).orElse(List.of());
            int acked = 0;
            while (acked < outcomes.size() && outcomes.get(acked).kind() == Kind.ACKED) {
                acked++;
            }
            if (acked > 0) {
                record(rows, outcomes.subList(0, acked));
                meters.counter("hub.federation.messages.sent", "outcome", "acked").increment(acked);
            }
            if (acked < rows.size()) {
                LOG.debugf("Federation messages to %s sent ahead of the acknowledgement before them: %d of %d acknowledged, "
                        + "the rest go in order", f.destination, acked, rows.size());
            }
        } catch (SQLException | RuntimeException e) {
            LOG.debugf("Federation messages to %s go in order after the acknowledgement before them: %s", f.destination,
                    e.getMessage());
        } finally {
            f.done();
        }
    }

    /** The outcomes of the first rows (as many as there are outcomes), in one transaction. */
    private void record(List<OutboxRow> rows, List<Outcome> outcomes) throws SQLException {
        db.inTransaction(c -> {
            Instant now = Instant.now();
            List<Long> acked = new ArrayList<>(); // the usual case, however many: one statement
            for (int i = 0; i < outcomes.size(); i++) {
                if (outcomes.get(i).kind() == Kind.ACKED) {
                    acked.add(rows.get(i).id());
                }
            }
            if (!acked.isEmpty()) {
                try (PreparedStatement up = c.prepareStatement(ACK)) {
                    up.setObject(1, Database.utc(now));
                    up.setArray(2, c.createArrayOf("bigint", acked.toArray()));
                    up.executeUpdate();
                }
            }
            for (int i = 0; i < outcomes.size(); i++) {
                OutboxRow row = rows.get(i);
                Outcome outcome = outcomes.get(i);
                if (outcome.kind() == Kind.ACKED) {
                    continue;
                }
                String sql = switch (outcome.kind()) {
                    case ACKED -> throw new IllegalStateException("acknowledged rows are recorded above");
                    case DEAD -> "UPDATE fed_outbox SET status = 'DEAD', next_attempt_at = ?, attempts = attempts + 1, "
                            + "last_error = ? WHERE id = ? AND status = 'PENDING'";
                    case RETRY -> "UPDATE fed_outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? "
                            + "WHERE id = ? AND status = 'PENDING'";
                };
                try (PreparedStatement up = c.prepareStatement(sql)) {
                    up.setObject(1, Database.utc(outcome.kind() == Kind.DEAD ? now : now.plus(backoff(row.attempts() + 1))));
                    up.setString(2, outcome.error());
                    up.setLong(3, row.id());
                    up.executeUpdate();
                }
            }
            return null;
        });
    }

    Duration backoff(int attempts) {
        long factor = 1L << Math.min(20, Math.max(0, attempts - 1));
        Duration d = backoffInitial.multipliedBy(factor);
        return d.compareTo(backoffMax) > 0 ? backoffMax : d;
    }

    private record OutboxRow(long id, String messageId, String destination, String type, String wire, int attempts,
            Instant nextAttemptAt, String projectId) {
    }

    /** Rows acknowledged: parameters acked_at and the array of ids. */
    private static final String ACK = "UPDATE fed_outbox SET status = 'ACKED', acked_at = ?, attempts = attempts + 1, "
            + "last_error = NULL WHERE id = ANY(?) AND status = 'PENDING'";
    private static final String HEADS = "SELECT id, message_id, destination, message_type, message, attempts, "
            + "next_attempt_at, project_id FROM fed_outbox WHERE destination = ? AND status = 'PENDING' ";

    /**
     * Records {@code acked} as acknowledged and reads the destination's next pending messages (as {@link #heads}), in one
     * statement (PostgreSQL): the next transmission to the destination waits for both, and on a loaded database each
     * round trip costs milliseconds. The read does not see the update (one snapshot), so the rows just acknowledged are
     * left out by id.
     */
    private List<OutboxRow> ackedThenHeads(List<OutboxRow> acked, String destination, int limit) throws SQLException {
        List<OutboxRow> read;
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("WITH acked AS (" + ACK + ") "
                + HEADS + "AND id <> ALL(?) ORDER BY id LIMIT ?")) {
            java.sql.Array ids = c.createArrayOf("bigint", acked.stream().map(OutboxRow::id).toArray());
            q.setObject(1, Database.utc(Instant.now()));
            q.setArray(2, ids);
            q.setString(3, destination);
            q.setArray(4, ids);
            q.setInt(5, Math.max(1, limit));
            read = read(q);
        }
        return signedWithinBudget(read);
    }

    /**
     * The destination's first pending messages in id order, signed (a message this node wrote is signed when sent, see
     * {@link Messages#draft}): at most {@code limit}, within the batch's byte budget (at least one).
     */
    private List<OutboxRow> heads(String destination, int limit) throws SQLException {
        List<OutboxRow> read;
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(HEADS + "ORDER BY id LIMIT ?")) {
            q.setString(1, destination);
            q.setInt(2, Math.max(1, limit));
            read = read(q);
        }
        return signedWithinBudget(read);
    }

    private static List<OutboxRow> read(PreparedStatement q) throws SQLException {
        List<OutboxRow> read = new ArrayList<>();
        try (ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                read.add(new OutboxRow(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4),
                        rs.getString(5), rs.getInt(6), rs.getObject(7, OffsetDateTime.class).toInstant(), rs.getString(8)));
            }
        }
        return read;
    }

    /** The rows signed (their connection back in the pool), as many as the batch's byte budget takes (at least one). */
    private List<OutboxRow> signedWithinBudget(List<OutboxRow> read) {
        List<OutboxRow> rows = new ArrayList<>(read.size());
        long bytes = 0;
        for (OutboxRow r : read) {
            OutboxRow row = new OutboxRow(r.id(), r.messageId(), r.destination(), r.type(), messages.signed(r.wire()),
                    r.attempts(), r.nextAttemptAt(), r.projectId());
            bytes += utf8Length(row.wire()) + 1; // the body limit counts bytes: a Chinese character is 3
            if (!rows.isEmpty() && bytes > batchMaxBytes) {
                break;
            }
            rows.add(row);
        }
        return rows;
    }

    /** The length of {@code s} in UTF-8, without encoding it. */
    static long utf8Length(String s) {
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch < 0x80) {
                n += 1;
            } else if (ch < 0x800) {
                n += 2;
            } else if (Character.isHighSurrogate(ch) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                n += 4;
                i++;
            } else if (Character.isSurrogate(ch)) {
                n += 1; // a lone surrogate is sent as '?'
            } else {
                n += 3;
            }
        }
        return n;
    }

    private enum Kind {
        ACKED,
        RETRY,
        DEAD
    }

    private record Outcome(Kind kind, String error) {
    }

    /** The node an HTTP transmission to {@code destination} goes to: the destination, or the central hub. */
    String nextHop(String destination) {
        String self = identity.nodeId();
        if (relayNode.isPresent() && !relayNode.get().equals(self) && !relayNode.get().equals(destination)) {
            return relayNode.get();
        }
        return destination;
    }

    private Outcome send(OutboxRow row) {
        Transmitted t = transmit(row.destination(), row.wire());
        if (t.outcome() != null) {
            return t.outcome();
        }
        int s = t.response().statusCode();
        return s >= 200 && s < 300 ? new Outcome(Kind.ACKED, null) : notAcknowledged(s, t.hop(), t.response().body());
    }

    /** A message the receiver did not acknowledge: parked if it refused it for good, retried otherwise. */
    private static Outcome notAcknowledged(int status, String hop, String detail) {
        return new Outcome(REFUSED_FOR_GOOD.contains(status) ? Kind.DEAD : Kind.RETRY,
                "HTTP " + status + " from " + hop + ": " + abbreviate(detail));
    }

    /**
     * Several messages in one transmission. The outcomes of the first messages, in order (the receiver stops at the
     * first it does not acknowledge); empty when the receiver refuses the batch as such for good (send one at a time).
     */
    private Optional<List<Outcome>> sendBatch(List<OutboxRow> rows) {
        StringBuilder body = new StringBuilder(rows.stream().mapToInt(r -> r.wire().length() + 1).sum() + 2).append('[');
        for (int i = 0; i < rows.size(); i++) {
            body.append(i == 0 ? "" : ",").append(rows.get(i).wire());
        }
        Transmitted t = transmit(rows.get(0).destination(), body.append(']').toString());
        if (t.outcome() != null) {
            return Optional.of(List.of(t.outcome()));
        }
        int s = t.response().statusCode();
        String why = "HTTP " + s + " from " + t.hop() + ": " + abbreviate(t.response().body());
        if (s < 200 || s >= 300) {
            if (REFUSED_FOR_GOOD.contains(s)) {
                LOG.warnf("A transmission of %d messages to %s was refused (%s): sending them one at a time", rows.size(),
                        rows.get(0).destination(), why);
                return Optional.empty();
            }
            return Optional.of(List.of(new Outcome(Kind.RETRY, why)));
        }
        JsonNode results;
        try {
            results = mapper.readTree(t.response().body()).path("results");
        } catch (IOException e) {
            results = null;
        }
        if (results == null || !results.isArray() || results.isEmpty() || results.size() > rows.size()) {
            return Optional.of(List.of(new Outcome(Kind.RETRY, "unreadable answer to a batch from " + t.hop() + ": " + why)));
        }
        List<Outcome> out = new ArrayList<>();
        for (int i = 0; i < results.size(); i++) {
            JsonNode r = results.get(i);
            int status = r.path("status").asInt();
            if (status == 200 && rows.get(i).messageId().equals(r.path("ack").asText())) {
                out.add(new Outcome(Kind.ACKED, null));
                continue;
            }
            if (status == 200) { // acknowledged, but not this message: send it again
                out.add(new Outcome(Kind.RETRY, "HTTP 200 from " + t.hop() + ": " + abbreviate("acknowledged "
                        + r.path("ack").asText() + " in place of " + rows.get(i).messageId())));
            } else {
                out.add(notAcknowledged(status, t.hop(), r.path("error").asText()));
            }
            break;
        }
        return Optional.of(out);
    }

    /** One signed HTTP transmission of {@code body} toward {@code destination}: the response, or the outcome of failing. */
    private record Transmitted(String hop, HttpResponse<String> response, Outcome outcome) {
    }

    private Transmitted transmit(String destination, String body) {
        String hop = nextHop(destination);
        Optional<Peers.Peer> peer;
        try {
            peer = peers.find(hop);
        } catch (SQLException e) {
            return new Transmitted(hop, null, new Outcome(Kind.RETRY, "registry unavailable: " + e.getMessage()));
        }
        if (peer.isEmpty()) {
            return new Transmitted(hop, null, new Outcome(Kind.RETRY, "node " + hop
                    + " is not registered (hub.federation.peers or PUT /api/v1/federation/nodes/" + hop + ")"));
        }
        String nonce = UUID.randomUUID().toString();
        String timestamp = String.valueOf(System.currentTimeMillis());
        String node = identity.nodeId();
        HttpRequest request = HttpRequest.newBuilder(URI.create(peer.get().baseUrl() + Transmission.PATH))
                .timeout(requestTimeout)
                .header("Content-Type", "application/json")
                .header(Transmission.NODE, node)
                .header(Transmission.NONCE, nonce)
                .header(Transmission.TIMESTAMP, timestamp)
                .header(Transmission.SIGNATURE, identity.sign(Transmission.signedText(node, nonce, timestamp, body)))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
        try {
            return new Transmitted(hop, http.send(request, HttpResponse.BodyHandlers.ofString()), null);
        } catch (ConnectException e) {
            return new Transmitted(hop, null, new Outcome(Kind.RETRY, hop + " unreachable (" + peer.get().baseUrl() + ")"));
        } catch (HttpTimeoutException e) {
            return new Transmitted(hop, null, new Outcome(Kind.RETRY, hop + " did not answer in time"));
        } catch (IOException e) {
            return new Transmitted(hop, null, new Outcome(Kind.RETRY, hop + ": " + e));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Transmitted(hop, null, new Outcome(Kind.RETRY, "interrupted"));
        }
    }

    private static String abbreviate(String s) {
        return s == null ? "" : s.length() > 500 ? s.substring(0, 500) + "…" : s;
    }

    private void purgeNonces(Instant now) {
        if (Duration.between(lastPurge, now).toSeconds() < 60) {
            return;
        }
        lastPurge = now;
        try {
            db.inTransaction(c -> {
                try (PreparedStatement d = c.prepareStatement("DELETE FROM fed_nonce WHERE seen_at < ?")) {
                    d.setObject(1, Database.utc(now.minus(nonceWindow)));
                    d.executeUpdate();
                }
                try (PreparedStatement d = c.prepareStatement("DELETE FROM fed_rejection WHERE received_at < ?")) {
                    d.setObject(1, Database.utc(now.minus(rejectionsKept)));
                    return d.executeUpdate();
                }
            });
        } catch (SQLException e) {
            LOG.warnf("Cannot purge old federation nonces and rejections: %s", e.getMessage());
        }
    }

    /**
     * Sends again at once: the given messages (any status; a receiver ignores what it already has), or else every
     * pending or parked message (of one destination, if given). Order is kept: they go out by id.
     */
    public int resend(String destination, List<String> messageIds) throws SQLException {
        return db.inTransaction(c -> {
            Database.afterCommit(() -> {
                try {
                    sendDue();
                } catch (SQLException e) {
                    LOG.warnf("Resent messages go out at the next poll: %s", e.getMessage());
                }
            });
            Instant now = Instant.now();
            if (messageIds != null && !messageIds.isEmpty()) {
                int n = 0;
                for (String id : messageIds) {
                    try (PreparedStatement up = c.prepareStatement("UPDATE fed_outbox SET status = 'PENDING', next_attempt_at = ? "
                            + "WHERE message_id = ?" + (destination == null ? "" : " AND destination = ?"))) {
                        up.setObject(1, Database.utc(now));
                        up.setString(2, id);
                        if (destination != null) {
                            up.setString(3, destination);
                        }
                        n += up.executeUpdate();
                    }
                }
                return n;
            }
            try (PreparedStatement up = c.prepareStatement("UPDATE fed_outbox SET status = 'PENDING', next_attempt_at = ? "
                    + "WHERE status IN ('PENDING', 'DEAD')" + (destination == null ? "" : " AND destination = ?"))) {
                up.setObject(1, Database.utc(now));
                if (destination != null) {
                    up.setString(2, destination);
                }
                return up.executeUpdate();
            }
        });
    }

    public List<OutboxMessage> list(String destination, String status, int limit) throws SQLException {
        StringBuilder sql = new StringBuilder("SELECT id, message_id, destination, message_type, project_id, status, attempts, "
                + "next_attempt_at, last_error, created_at, acked_at FROM fed_outbox WHERE 1 = 1");
        List<String> args = new ArrayList<>();
        if (destination != null) {
            sql.append(" AND destination = ?");
            args.add(destination);
        }
        if (status != null) {
            sql.append(" AND status = ?");
            args.add(status);
        }
        sql.append(" ORDER BY id LIMIT ").append(limit);
        List<OutboxMessage> out = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(sql.toString())) {
            for (int i = 0; i < args.size(); i++) {
                q.setString(i + 1, args.get(i));
            }
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    OffsetDateTime acked = rs.getObject(11, OffsetDateTime.class);
                    out.add(new OutboxMessage(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4), rs.getString(5),
                            rs.getString(6), rs.getInt(7), rs.getObject(8, OffsetDateTime.class).toInstant(), rs.getString(9),
                            rs.getObject(10, OffsetDateTime.class).toInstant(), acked == null ? null : acked.toInstant()));
                }
            }
        }
        return out;
    }
}
