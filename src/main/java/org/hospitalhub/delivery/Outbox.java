package org.hospitalhub.delivery;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.ExchangeProperty;
import org.eclipse.microprofile.config.ConfigProvider;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

import io.quarkus.runtime.Startup;

/**
 * Dispatches stored events to their flows, in the order they were stored. The replica holding the flow's lease reads
 * PENDING outbox rows past its cursor and hands them to the flow's route; a row leaves PENDING only when its batch was
 * delivered ({@link #settle}) or dead-lettered. Nothing is lost if the process dies: the next holder of the lease
 * starts again from the first PENDING row (the sinks ignore what they already applied).
 */
@ApplicationScoped
@Startup // its settings are checked when the hub starts
@Named("outbox")
public class Outbox {

    private static final Logger LOG = Logger.getLogger(Outbox.class);

    private final Database db;
    private final Leases leases;
    private final EventParser parser;
    private final DeliveryMetrics metrics;
    private final int maxInFlight;
    private final Duration claimTimeout;
    private final Duration rescanPeriod;
    private final Duration lateWindow;
    private final Duration lateCheck;
    private final Duration backlogEvery = Duration.ofSeconds(5);
    private final Clock clock = Clock.systemUTC();
    private final Map<String, FlowState> state = new ConcurrentHashMap<>();

    public Outbox(Database db, Leases leases, EventParser parser, DeliveryMetrics metrics,
            @ConfigProperty(name = "hub.outbox.max-in-flight", defaultValue = "2000") int maxInFlight,
            @ConfigProperty(name = "hub.outbox.claim-timeout", defaultValue = "10m") Duration claimTimeout,
            @ConfigProperty(name = "hub.outbox.rescan-period", defaultValue = "30s") Duration rescanPeriod,
            @ConfigProperty(name = "hub.outbox.late-commit-window", defaultValue = "5s") Duration lateWindow,
            @ConfigProperty(name = "hub.outbox.late-commit-check", defaultValue = "200ms") Duration lateCheck) {
        this.db = db;
        this.leases = leases;
        this.parser = parser;
        this.metrics = metrics;
        this.maxInFlight = maxInFlight;
        int queue = ConfigProvider.getConfig()
                .getOptionalValue("camel.threadpool.config[hub-ordered-delivery].max-queue-size", Integer.class).orElse(0);
        if (maxInFlight < 1 || queue < maxInFlight) {
            // each waiting batch holds at least one claimed event: a queue this size never fills
            throw new IllegalStateException("hub.outbox.max-in-flight (" + maxInFlight + ") must be at least 1 and at most "
                    + "camel.threadpool.config[hub-ordered-delivery].max-queue-size (" + queue + "), the number of batches "
                    + "that can wait for a flow's delivery thread");
        }
        this.claimTimeout = claimTimeout;
        this.rescanPeriod = rescanPeriod;
        this.lateWindow = lateWindow;
        this.lateCheck = lateCheck;
    }

    private static final class FlowState {
        long cursor;
        /** Event ids in flight: when claimed, and their hub_delivery row (settled by its id). */
        final Map<String, Claim> claimed = new ConcurrentHashMap<>();
        /** Batch-per-poll flows: events claimed whose batch has not yet reached the delivery thread. */
        final AtomicInteger waiting = new AtomicInteger();
        Instant backlogAt = Instant.EPOCH;
        Instant rescanAt = Instant.EPOCH;
        Instant lateAt = Instant.EPOCH;
        /** (epoch ms, cursor) at the polls of the last late-commit window, oldest first. */
        final ArrayDeque<long[]> cursors = new ArrayDeque<>();
        volatile boolean rescan;

        /** Where the cursor stood {@code window} ago (or the oldest position known, if the flow started since). */
        long cursorBefore(Instant now, Duration window) {
            long limit = now.minus(window).toEpochMilli();
            while (cursors.size() > 1) {
                Iterator<long[]> it = cursors.iterator();
                it.next();
                if (it.next()[0] > limit) {
                    break;
                }
                cursors.pollFirst();
            }
            return cursors.isEmpty() ? cursor : Math.min(cursor, cursors.peekFirst()[1]);
        }
    }

    private record Claim(Instant at, long row) {
    }

    /**
     * Next events for the flow, or none when another replica runs it or too many are in flight. A batch-per-poll flow
     * (outbox-source's {@code batchPerPoll}) also gets none while a batch it claimed before still waits for the flow's
     * delivery thread: the events keep coming in meanwhile, so under load its batches grow (up to completionSize)
     * instead of queueing up small.
     */
    public List<Event> claim(@ExchangeProperty("HubFlow") String flow,
            @ExchangeProperty("HubBatchPerPoll") String batchPerPoll) throws SQLException {
        FlowState s = state.computeIfAbsent(flow, f -> new FlowState());
        Leases.Hold hold = leases.hold("outbox:" + flow);
        if (!hold.held()) {
            s.claimed.clear();
            s.waiting.set(0);
            s.cursor = 0;
            return List.of();
        }
        Instant now = clock.instant();
        if (hold == Leases.Hold.ACQUIRED || s.rescan) {
            s.rescan = false;
            s.cursor = 0;
            s.claimed.clear();
            s.waiting.set(0);
        }
        boolean perPoll = "true".equals(batchPerPoll);
        if (now.isAfter(s.rescanAt.plus(rescanPeriod))) {
            // A replay on another replica reopens rows behind this replica's cursor and cannot tell it: read again
            // from the first PENDING row now and then (rows in flight are skipped, they are still claimed).
            s.rescanAt = now;
            s.cursor = 0;
        }
        expireStaleClaims(flow, s, now);
        if (now.isAfter(s.backlogAt.plus(backlogEvery))) {
            s.backlogAt = now;
            metrics.backlog(flow, count(flow));
        }
        int room = maxInFlight - s.claimed.size();
        if (room <= 0 || perPoll && s.waiting.get() > 0) {
            return List.of();
        }
        long from = s.cursor;
        if (now.isAfter(s.lateAt.plus(lateCheck))) {
            // Row ids are taken at insert and become visible at commit: an ingest transaction that commits after a later
            // one has its row behind the cursor. Now and then read again from where the cursor stood a late-commit
            // window ago (only rows still PENDING come back: the ones in flight, skipped, and such late ones).
            s.lateAt = now;
            from = s.cursorBefore(now, lateWindow);
        }
        s.cursors.addLast(new long[] { now.toEpochMilli(), s.cursor });
        List<Event> events = new ArrayList<>();
        // Behind the cursor the rows in flight are still PENDING: leave them out in the query, or under a backlog they
        // would fill the LIMIT and a read behind the cursor (late commits, rescan) would find next to nothing new.
        Object[] inFlight = from < s.cursor ? s.claimed.values().stream().map(Claim::row).toArray() : new Object[0];
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT d.id, d.event_id, e.envelope FROM hub_delivery d "
                        + "JOIN hub_event e ON e.event_id = d.event_id "
                        + "WHERE d.flow = ? AND d.status = 'PENDING' AND d.id > ? AND d.id <> ALL(?) ORDER BY d.id LIMIT ?")) {
            q.setString(1, flow);
            q.setLong(2, from);
            q.setArray(3, c.createArrayOf("bigint", inFlight));
            q.setInt(4, room);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    long row = rs.getLong(1);
                    s.cursor = Math.max(s.cursor, row);
                    if (s.claimed.containsKey(rs.getString(2))) {
                        continue; // in flight
                    }
                    Event e = parser.fromStored(rs.getString(3));
                    if (s.claimed.putIfAbsent(e.eventId(), new Claim(now, row)) == null) {
                        events.add(e);
                    }
                }
            }
        }
        if (perPoll) {
            s.waiting.addAndGet(events.size());
        }
        return events;
    }

    /** A batch reached the flow's delivery thread (first step of outbox-source's batch). */
    public void started(@ExchangeProperty("HubFlow") String flow, @ExchangeProperty("HubBatch") List<Event> batch) {
        FlowState s = state.get(flow);
        if (s != null) {
            s.waiting.updateAndGet(n -> Math.max(0, n - batch.size()));
        }
    }

    private void expireStaleClaims(String flow, FlowState s, Instant now) {
        Instant limit = now.minus(claimTimeout);
        boolean expired = s.claimed.values().removeIf(t -> t.at().isBefore(limit));
        if (expired) {
            // A batch went missing in flight (it neither settled nor reached the dead-letter store): read again.
            LOG.warnf("Flow %s: claims older than %s were neither delivered nor dead-lettered; dispatching them again",
                    flow, claimTimeout);
            s.cursor = 0;
            s.waiting.set(0);
        }
    }

    /**
     * Marks a delivered batch DELIVERED (rows already dead-lettered keep that state). Rows are found by the id read when
     * they were claimed: by (flow, event_id, status) PostgreSQL, with statistics from before a backlog, may walk the
     * flow's PENDING rows on the (flow, status, id) index, one whole backlog per event (6.8 ms each at 18,000 pending).
     */
    public void settle(@ExchangeProperty("HubFlow") String flow, @ExchangeProperty("HubBatch") List<Event> batch) throws SQLException {
        FlowState s = state.get(flow);
        int n = db.inTransaction(c -> {
            try (PreparedStatement byRow = c.prepareStatement("UPDATE hub_delivery SET status = 'DELIVERED', settled_at = ? "
                    + "WHERE id = ANY(?) AND status = 'PENDING'");
                    PreparedStatement byEvent = c.prepareStatement("UPDATE hub_delivery SET status = 'DELIVERED', settled_at = ? "
                            + "WHERE event_id = ? AND flow = ? AND status = 'PENDING'")) {
                Instant now = clock.instant();
                List<Long> rows = new ArrayList<>(batch.size());
                boolean events = false;
                for (Event e : batch) {
                    Claim claim = s == null ? null : s.claimed.get(e.eventId());
                    if (claim != null) {
                        rows.add(claim.row());
                    } else { // no longer in flight here (a rescan or a lost lease cleared it)
                        byEvent.setObject(1, Database.utc(now));
                        byEvent.setString(2, e.eventId());
                        byEvent.setString(3, flow);
                        byEvent.addBatch();
                        events = true;
                    }
                }
                int total = 0;
                if (!rows.isEmpty()) { // one statement for the batch's claimed rows
                    byRow.setObject(1, Database.utc(now));
                    byRow.setArray(2, c.createArrayOf("bigint", rows.toArray()));
                    total += byRow.executeUpdate();
                }
                for (int r : events ? byEvent.executeBatch() : new int[0]) {
                    total += Math.max(r, 0);
                }
                return total;
            }
        });
        release(flow, batch.stream().map(Event::eventId).toList());
        LOG.debugf("Flow %s: %d of %d events settled as delivered", flow, n, batch.size());
    }

    /** Marks outbox rows DEAD inside the dead-letter store's transaction. */
    void markDead(Connection c, String flow, Collection<String> eventIds) throws SQLException {
        try (PreparedStatement up = c.prepareStatement("UPDATE hub_delivery SET status = 'DEAD', settled_at = ? "
                + "WHERE flow = ? AND event_id = ? AND status = 'PENDING'")) {
            Instant now = clock.instant();
            for (String id : eventIds) {
                up.setObject(1, Database.utc(now));
                up.setString(2, flow);
                up.setString(3, id);
                up.addBatch();
            }
            up.executeBatch();
        }
    }

    /** Puts dead outbox rows back to PENDING (replay) inside the caller's transaction. */
    int reopen(Connection c, String flow, String eventId) throws SQLException {
        try (PreparedStatement up = c.prepareStatement("UPDATE hub_delivery SET status = 'PENDING', settled_at = NULL "
                + "WHERE flow = ? AND event_id = ? AND status = 'DEAD'")) {
            up.setString(1, flow);
            up.setString(2, eventId);
            return up.executeUpdate();
        }
    }

    /**
     * After the dead-letter store committed rows as DEAD: releases their claims, except for rows a replay has reopened
     * since (PENDING again): the dispatcher may already have claimed one of those anew, and releasing that claim would
     * let the next read behind the cursor dispatch it a second time.
     */
    void releaseDead(String flow, List<String> eventIds) {
        if (eventIds.isEmpty()) {
            return;
        }
        List<String> done = new ArrayList<>(eventIds);
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT event_id FROM hub_delivery WHERE flow = ? AND status = 'PENDING' AND event_id = ANY(?)")) {
            q.setString(1, flow);
            q.setArray(2, c.createArrayOf("varchar", eventIds.toArray()));
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    done.remove(rs.getString(1));
                }
            }
        } catch (SQLException e) {
            // not releasing is safe: the claims lapse after hub.outbox.claim-timeout, and a rescan clears them
            LOG.warnf("Flow %s: cannot check dead-lettered rows, their claims stay until they lapse: %s", flow, e.getMessage());
            return;
        }
        release(flow, done);
    }

    void release(String flow, Collection<String> eventIds) {
        FlowState s = state.get(flow);
        if (s != null) {
            eventIds.forEach(s.claimed::remove);
        }
    }

    /** Reopened rows lie behind the cursor: read the flow from its first PENDING row again. */
    public void rescan(String flow) {
        state.computeIfAbsent(flow, f -> new FlowState()).rescan = true;
    }

    public long count(String flow) throws SQLException {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement(
                        "SELECT COUNT(*) FROM hub_delivery WHERE flow = ? AND status = 'PENDING'")) {
            q.setString(1, flow);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }
}
