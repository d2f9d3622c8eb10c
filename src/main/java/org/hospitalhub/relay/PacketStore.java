package org.hospitalhub.relay;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;

import javax.sql.DataSource;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;

import com.fasterxml.jackson.core.JsonProcessingException;

/**
 * The node's packets in its database (table relay_packet): stored before the previous hop is acknowledged, read per
 * hop in hop_seq order, settled when the next hop acknowledged them by moving the hop's cursor (relay_hop_ack: one row
 * per hop, not an update per packet), dead-lettered with a reason when their ttl passes or they cannot be routed. The
 * top node also writes its audit rows here, in the same transaction.
 */
final class PacketStore {

    /** A packet about to be stored: where it goes next (or why it is dead on arrival). */
    record Incoming(Packet packet, String body, Routing.Decision decision) {
    }

    /** A stored packet as the next hop gets it. */
    record Stored(long id, String packetId, String hop, long seq, String body, int attempts, String sender, String target) {
    }

    /** A dead letter, for operators. */
    record Dead(long id, String packetId, String sender, String target, String command, int sizeBytes,
            OffsetDateTime createdAt, OffsetDateTime deadAt, String hop, String reason, int attempts) {
    }

    record Audit(long id, String packetId, String sender, String target, String command, int sizeBytes,
            OffsetDateTime createdAt, OffsetDateTime passedAt, String receivedFrom) {
    }

    static final String DEAD_HOP = "!dead";
    /**
     * status = 'PENDING', written so that no status index could serve it: every delivered packet stays PENDING (its
     * hop's cursor settles it), so the (status, id) index that listed dead letters until V41 matched nearly the whole
     * table, and a planner with stale statistics (a table filling fast) chose to scan it for each read of a hop's
     * packets. (Dead letters are now listed through relay_dead_letter.)
     */
    private static final String NOT_SETTLED = "status NOT IN ('DEAD', 'SENT')"; // ck_relay_packet_status: the third value

    private final DataSource ds;
    private final String node;
    private final boolean audit;
    /** Each hop's cursor (relay_hop_ack.acked_seq) as this store last read it; the database's is never behind it. */
    private final Map<String, Long> cursors = new ConcurrentHashMap<>();
    private static final int MAX_KNOWN_CURSORS = 200_000;

    PacketStore(DataSource ds, String node, boolean audit) {
        this.ds = ds;
        this.node = node;
        this.audit = audit;
    }

    /** The node's database (the replicas' signals listen on a connection of their own from it). */
    DataSource dataSource() {
        return ds;
    }

    /** The packets of one request (a SEND frame, a POST, a packet from the parent) and who sent them. */
    record Request(List<Incoming> batch, String receivedFrom, boolean fromParent) {
        String leg() {
            return fromParent ? "D" : "U";
        }
    }

    /**
     * Stores the new packets of several requests in one transaction (group commit: one counter update per hop, or for
     * more than {@link #MANY_HOPS} hops on PostgreSQL one for all of them, one duplicate query per leg, one insert batch,
     * one commit for all of them), in order: duplicates (a packetId already
     * here, or earlier in the group) are not stored again; packets already past their ttl or without a route are stored
     * dead. The hop counters are locked in name order (no deadlock between two transactions), which also makes the
     * hop_seq values commit in order. Returns the results per request.
     */
    List<List<SendResult>> storeAll(List<Request> requests, Instant now) throws SQLException {
        Set<String> hops = new TreeSet<>();
        for (Request r : requests) {
            for (Incoming in : r.batch()) {
                hops.add(in.decision().deadReason() == null ? in.decision().hop() : DEAD_HOP);
            }
        }
        try (Connection c = ds.getConnection()) {
            boolean many = hops.size() > MANY_HOPS && isPostgres(c);
            if (many) {
                hops.add(DEAD_HOP); // a packet whose ttl passed on its way here is stored there
                createCounters(c, hops);
            }
            return inTransaction(c, () -> storeAll(c, requests, now, many));
        }
    }

    /**
     * A group for many hops (a packet to each of thousands of clients) reserves their sequence numbers in four statements
     * instead of one to four per hop. Above this many hops, on PostgreSQL.
     */
    static final int MANY_HOPS = 8;

    private interface Work<T> {
        T run() throws SQLException;
    }

    /** Runs {@code work} on {@code c} as one transaction: committed if it returns, rolled back if it throws. */
    private static <T> T inTransaction(Connection c, Work<T> work) throws SQLException {
        c.setAutoCommit(false);
        try {
            T result = work.run();
            c.commit();
            return result;
        } catch (SQLException | RuntimeException e) {
            c.rollback();
            throw e;
        }
    }

    private List<List<SendResult>> storeAll(Connection c, List<Request> requests, Instant now, boolean countersCreated)
            throws SQLException {
        List<Incoming> items = new ArrayList<>();
        List<Request> owners = new ArrayList<>();
        for (Request r : requests) {
            for (Incoming in : r.batch()) {
                items.add(in);
                owners.add(r);
            }
        }
        List<String> hops = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        for (Incoming in : items) {
            String reason = in.decision().deadReason();
            if (reason == null && !in.packet().expiresAt().isAfter(now)) {
                reason = "ttl of " + in.packet().ttl() + " s had passed (created " + in.packet().createdAt()
                        + ") when the packet reached node " + node;
            }
            reasons.add(reason);
            hops.add(reason == null ? in.decision().hop() : DEAD_HOP);
        }
        // lock each hop's counter (name order) before looking for duplicates: a concurrent copy of the same packet
        // for the same hop waits here and then sees this one
        Map<String, Integer> perHop = new TreeMap<>();
        hops.forEach(h -> perHop.merge(h, 1, Integer::sum));
        Map<String, Long> nextSeq = new LinkedHashMap<>();
        if (countersCreated) {
            nextSeq.putAll(reserveAll(c, perHop));
        } else {
            for (Map.Entry<String, Integer> e : perHop.entrySet()) {
                nextSeq.put(e.getKey(), reserve(c, e.getKey(), e.getValue()));
            }
        }
        long deadFrom = nextSeq.getOrDefault(DEAD_HOP, 0L);
        Map<String, List<String>> idsByLeg = new TreeMap<>();
        for (int i = 0; i < items.size(); i++) {
            idsByLeg.computeIfAbsent(owners.get(i).leg(), k -> new ArrayList<>()).add(items.get(i).packet().packetId());
        }
        Set<String> seen = new HashSet<>();
        for (Map.Entry<String, List<String>> e : idsByLeg.entrySet()) {
            existing(c, e.getValue(), e.getKey()).forEach(id -> seen.add(e.getKey() + ' ' + id));
        }
        List<SendResult> results = new ArrayList<>();
        Set<String> inBatch = new HashSet<>();
        List<Row> rows = new ArrayList<>(items.size());
        for (int i = 0; i < items.size(); i++) {
            Incoming in = items.get(i);
            Packet p = in.packet();
            String leg = owners.get(i).leg();
            String key = leg + ' ' + p.packetId();
            if (seen.contains(key) || !inBatch.add(key)) {
                results.add(new SendResult(p.packetId(), SendResult.Status.DUPLICATE, null));
                continue;
            }
            String hop = hops.get(i);
            String reason = reasons.get(i);
            rows.add(new Row(p, in.body(), utf8Length(in.body()), owners.get(i).receivedFrom(), hop,
                    nextSeq.merge(hop, 1L, Long::sum) - 1, reason, leg));
            results.add(new SendResult(p.packetId(), reason == null ? SendResult.Status.STORED : SendResult.Status.DEAD, reason));
        }
        if (!rows.isEmpty()) {
            if (isPostgres(c)) {
                insertUnnest(c, rows, now);
            } else {
                insertBatch(c, rows, now);
            }
        }
        Long deadTo = nextSeq.get(DEAD_HOP);
        if (deadTo != null) { // packets stored dead: the DEAD_HOP sequence numbers this transaction reserved
            try (PreparedStatement dl = c.prepareStatement("INSERT INTO relay_dead_letter (id) SELECT id FROM relay_packet "
                    + "WHERE hop = ? AND hop_seq >= ? AND hop_seq < ?")) {
                dl.setString(1, DEAD_HOP);
                dl.setLong(2, deadFrom);
                dl.setLong(3, deadTo);
                dl.executeUpdate();
            }
        }
        List<List<SendResult>> perRequest = new ArrayList<>();
        int from = 0;
        for (Request r : requests) {
            perRequest.add(List.copyOf(results.subList(from, from + r.batch().size())));
            from += r.batch().size();
        }
        return perRequest;
    }

    /** A packet row about to be inserted (and audited at the top). */
    private record Row(Packet packet, String body, int size, String receivedFrom, String hop, long seq, String reason,
            String leg) {
        String status() {
            return reason == null ? "PENDING" : "DEAD";
        }
    }

    private static final String INSERT_COLUMNS = "INSERT INTO relay_packet (packet_id, sender, target, command, "
            + "correlation_id, body, size_bytes, created_at, expires_at, received_at, received_from, hop, hop_seq, status, "
            + "last_error, done_at, leg) ";
    private static final String AUDIT_COLUMNS = "INSERT INTO relay_audit (packet_id, sender, target, command, size_bytes, "
            + "created_at, passed_at, received_from) ";

    /**
     * PostgreSQL: the rows (and their audit rows) as one statement each, a column per array, instead of a JDBC batch,
     * which the server executes as one statement per row: the inserts were most of a relay node's database time under
     * load, and a row inserted from arrays costs about half of one inserted by its own statement.
     */
    private void insertUnnest(Connection c, List<Row> rows, Instant now) throws SQLException {
        int n = rows.size();
        String[][] text = new String[11][n];
        Integer[] sizes = new Integer[n];
        Long[] seqs = new Long[n];
        Long[] created = new Long[n];
        Long[] expires = new Long[n];
        for (int i = 0; i < n; i++) {
            Row r = rows.get(i);
            Packet p = r.packet();
            text[0][i] = p.packetId();
            text[1][i] = p.from();
            text[2][i] = p.to();
            text[3][i] = p.command();
            text[4][i] = p.correlationId();
            text[5][i] = r.body();
            text[6][i] = r.receivedFrom();
            text[7][i] = r.hop();
            text[8][i] = cut(r.reason());
            text[9][i] = r.leg();
            text[10][i] = r.status();
            created[i] = epochMicros(p.createdAt());
            expires[i] = epochMicros(p.expiresAt());
            sizes[i] = r.size();
            seqs[i] = r.seq();
        }
        // instants as microseconds since the epoch: exact, and any year a packet may carry (ISO text of year 0 is not
        // a date PostgreSQL reads)
        try (PreparedStatement ins = c.prepareStatement(INSERT_COLUMNS + "SELECT u.a, u.b, u.c, u.d, u.e, u.f, u.m, "
                + instant("u.g") + ", " + instant("u.h") + ", ?, u.i, u.j, u.n, u.s, u.k, CASE WHEN u.k IS NULL THEN NULL "
                + "ELSE ?::timestamptz END, u.l FROM unnest(?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], "
                + "?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], "
                + "?::int[], ?::bigint[], ?::bigint[], ?::bigint[]) AS u(a, b, c, d, e, f, i, j, k, l, s, m, n, g, h)")) {
            ins.setObject(1, utc(now));
            ins.setObject(2, utc(now));
            for (int k = 0; k < text.length; k++) {
                ins.setArray(k + 3, c.createArrayOf("varchar", text[k]));
            }
            ins.setArray(14, c.createArrayOf("int4", sizes));
            ins.setArray(15, c.createArrayOf("int8", seqs));
            ins.setArray(16, c.createArrayOf("int8", created));
            ins.setArray(17, c.createArrayOf("int8", expires));
            ins.executeUpdate();
        }
        if (audit) {
            try (PreparedStatement aud = c.prepareStatement(AUDIT_COLUMNS + "SELECT u.a, u.b, u.c, u.d, u.m, " + instant("u.g")
                    + ", ?, u.i FROM unnest(?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::int[], "
                    + "?::bigint[], ?::varchar[]) AS u(a, b, c, d, m, g, i)")) {
                aud.setObject(1, utc(now));
                aud.setArray(2, c.createArrayOf("varchar", text[0]));
                aud.setArray(3, c.createArrayOf("varchar", text[1]));
                aud.setArray(4, c.createArrayOf("varchar", text[2]));
                aud.setArray(5, c.createArrayOf("varchar", text[3]));
                aud.setArray(6, c.createArrayOf("int4", sizes));
                aud.setArray(7, c.createArrayOf("int8", created));
                aud.setArray(8, c.createArrayOf("varchar", text[6]));
                aud.executeUpdate();
            }
        }
    }

    /**
     * The instant of a column of microseconds since the epoch, exact for any year a packet may carry: whole seconds and
     * the rest apart (PostgreSQL multiplies an interval as a double, which holds whole seconds' microseconds exactly but
     * not every count of microseconds beyond 2^53, about 285 years from 1970).
     */
    private static String instant(String micros) {
        return "(TIMESTAMPTZ 'epoch' + (" + micros + " / 1000000) * INTERVAL '1 second' + (" + micros + " % 1000000) "
                + "* INTERVAL '1 microsecond')";
    }

    /** Microseconds since the epoch, rounded as the database rounds a finer instant it is given. */
    static long epochMicros(Instant i) {
        return Math.addExact(Math.multiplyExact(i.getEpochSecond(), 1_000_000L), (i.getNano() + 500) / 1000);
    }

    /** Other databases (the embedded H2): one JDBC batch per table. */
    private void insertBatch(Connection c, List<Row> rows, Instant now) throws SQLException {
        try (PreparedStatement ins = c.prepareStatement(INSERT_COLUMNS
                + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
                PreparedStatement aud = audit ? c.prepareStatement(AUDIT_COLUMNS + "VALUES (?, ?, ?, ?, ?, ?, ?, ?)") : null) {
            for (Row r : rows) {
                Packet p = r.packet();
                ins.setString(1, p.packetId());
                ins.setString(2, p.from());
                ins.setString(3, p.to());
                ins.setString(4, p.command());
                ins.setString(5, p.correlationId());
                ins.setString(6, r.body());
                ins.setInt(7, r.size());
                ins.setObject(8, utc(p.createdAt()));
                ins.setObject(9, utc(p.expiresAt()));
                ins.setObject(10, utc(now));
                ins.setString(11, r.receivedFrom());
                ins.setString(12, r.hop());
                ins.setLong(13, r.seq());
                ins.setString(14, r.status());
                ins.setString(15, cut(r.reason()));
                ins.setObject(16, r.reason() == null ? null : utc(now));
                ins.setString(17, r.leg());
                ins.addBatch();
                if (aud != null) {
                    aud.setString(1, p.packetId());
                    aud.setString(2, p.from());
                    aud.setString(3, p.to());
                    aud.setString(4, p.command());
                    aud.setInt(5, r.size());
                    aud.setObject(6, utc(p.createdAt()));
                    aud.setObject(7, utc(now));
                    aud.setString(8, r.receivedFrom());
                    aud.addBatch();
                }
            }
            ins.executeBatch();
            if (aud != null) {
                aud.executeBatch();
            }
        }
    }

    private volatile Boolean postgres;

    private boolean isPostgres(Connection c) throws SQLException {
        Boolean pg = postgres;
        if (pg == null) {
            pg = org.hospitalhub.delivery.Database.isPostgres(c);
            postgres = pg;
        }
        return pg;
    }

    /** Reserves {@code n} sequence numbers of a hop; the row stays locked until the transaction ends. */
    private long reserve(Connection c, String hop, int n) throws SQLException {
        for (int attempt = 0; attempt < 2; attempt++) {
            Long next = advance(c, hop, n);
            if (next != null) {
                return next - n;
            }
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO relay_hop (hop, next_seq) VALUES (?, 1) ON CONFLICT DO NOTHING");
                    PreparedStatement cursor = c.prepareStatement("INSERT INTO relay_hop_ack (hop, acked_seq) VALUES (?, 0) "
                            + "ON CONFLICT DO NOTHING")) {
                ins.setString(1, hop);
                ins.executeUpdate();
                cursor.setString(1, hop);
                cursor.executeUpdate();
            }
        }
        throw new SQLException("cannot reserve a sequence number for hop " + hop);
    }

    /**
     * Creates the counters and cursors of hops seen for the first time (PostgreSQL), each statement committed on its
     * own before the group's transaction begins: a statement that waits for another writer creating the same counter
     * holds nothing meanwhile, and the group's transaction then only locks counters that exist, in name order.
     */
    private static void createCounters(Connection c, Set<String> hops) throws SQLException {
        c.setAutoCommit(true);
        Object[] names = hops.toArray();
        try (PreparedStatement counters = c.prepareStatement("INSERT INTO relay_hop (hop, next_seq) "
                + "SELECT h, 1 FROM unnest(?::varchar[]) AS t(h) ORDER BY h ON CONFLICT DO NOTHING");
                PreparedStatement cursors = c.prepareStatement("INSERT INTO relay_hop_ack (hop, acked_seq) "
                        + "SELECT h, 0 FROM unnest(?::varchar[]) AS t(h) ORDER BY h ON CONFLICT DO NOTHING")) {
            counters.setArray(1, c.createArrayOf("varchar", names));
            counters.executeUpdate();
            cursors.setArray(1, c.createArrayOf("varchar", names));
            cursors.executeUpdate();
        }
    }

    /**
     * {@link #reserve} for many hops at once (PostgreSQL, their counters created by {@link #createCounters}): locks the
     * counters in name order, as {@link #reserve} does one by one, then advances them all in one update. Returns each
     * hop's first reserved number.
     */
    private static Map<String, Long> reserveAll(Connection c, Map<String, Integer> perHop) throws SQLException {
        Object[] hops = perHop.keySet().toArray(); // name order (a TreeMap)
        try (PreparedStatement lock = c.prepareStatement("SELECT hop FROM relay_hop WHERE hop = ANY(?) ORDER BY hop FOR UPDATE");
                PreparedStatement up = c.prepareStatement("UPDATE relay_hop h SET next_seq = h.next_seq + v.n "
                        + "FROM unnest(?::varchar[], ?::int[]) AS v(hop, n) WHERE h.hop = v.hop RETURNING h.hop, h.next_seq")) {
            lock.setArray(1, c.createArrayOf("varchar", hops));
            try (ResultSet rs = lock.executeQuery()) {
                while (rs.next()) {
                    // each row is locked as it is read
                }
            }
            up.setArray(1, c.createArrayOf("varchar", hops));
            up.setArray(2, c.createArrayOf("integer", perHop.values().toArray()));
            Map<String, Long> first = new LinkedHashMap<>();
            try (ResultSet rs = up.executeQuery()) {
                while (rs.next()) {
                    String hop = rs.getString(1);
                    first.put(hop, rs.getLong(2) - perHop.get(hop));
                }
            }
            if (first.size() != hops.length) {
                throw new SQLException("no sequence counter for " + (hops.length - first.size()) + " of " + hops.length + " hops");
            }
            return first;
        }
    }

    /** Adds {@code n} to the hop's counter and returns its new value, or null if the hop has no counter yet. */
    private Long advance(Connection c, String hop, int n) throws SQLException {
        boolean pg = isPostgres(c);
        try (PreparedStatement up = c.prepareStatement("UPDATE relay_hop SET next_seq = next_seq + ? WHERE hop = ?"
                + (pg ? " RETURNING next_seq" : ""))) { // PostgreSQL: one round trip
            up.setInt(1, n);
            up.setString(2, hop);
            if (pg) {
                try (ResultSet rs = up.executeQuery()) {
                    return rs.next() ? rs.getLong(1) : null;
                }
            }
            if (up.executeUpdate() == 0) {
                return null;
            }
        }
        try (PreparedStatement q = c.prepareStatement("SELECT next_seq FROM relay_hop WHERE hop = ?")) {
            q.setString(1, hop);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    private static Set<String> existing(Connection c, List<String> ids, String leg) throws SQLException {
        Set<String> found = new HashSet<>();
        if (ids.isEmpty()) {
            return found;
        }
        // one statement text for any number of ids (an IN list of n parameters is a new statement to plan for each n)
        try (PreparedStatement q = c.prepareStatement("SELECT packet_id FROM relay_packet WHERE leg = ? AND packet_id = ANY(?)")) {
            q.setString(1, leg);
            q.setArray(2, c.createArrayOf("varchar", ids.toArray()));
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    found.add(rs.getString(1));
                }
            }
        }
        return found;
    }

    /** The hop's packets still to send, after {@code afterSeq} and after its acknowledged cursor, in order. */
    List<Stored> pending(String hop, long afterSeq, int limit) throws SQLException {
        try (Connection c = ds.getConnection();
                PreparedStatement q = c.prepareStatement("SELECT id, packet_id, hop, hop_seq, body, attempts, sender, target "
                        + "FROM relay_packet WHERE hop = ? AND " + NOT_SETTLED + " AND hop_seq > GREATEST(?, COALESCE("
                        + "(SELECT a.acked_seq FROM relay_hop_ack a WHERE a.hop = ?), 0)) ORDER BY hop_seq LIMIT ?")) {
            q.setString(1, hop);
            q.setLong(2, afterSeq);
            q.setString(3, hop);
            q.setInt(4, limit);
            List<Stored> out = new ArrayList<>();
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(new Stored(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getLong(4), rs.getString(5),
                            rs.getInt(6), rs.getString(7), rs.getString(8)));
                }
            }
            return out;
        }
    }

    /** The hops that have packets waiting (one probe per known hop, after its cursor, through the hop_seq index). */
    List<String> hopsWithPending() throws SQLException {
        return new ArrayList<>(waitingHops().keySet());
    }

    /** The hops that have packets waiting, in name order, each with its cursor ({@link #WAITING_HOPS}). */
    private Map<String, Long> waitingHops() throws SQLException {
        Map<String, Long> waiting = new LinkedHashMap<>();
        try (Connection c = ds.getConnection(); PreparedStatement q = c.prepareStatement(WAITING_HOPS);
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                waiting.put(rs.getString(1), rs.getLong(2));
            }
        }
        return waiting;
    }

    /**
     * The next hop acknowledged everything of this hop up to {@code seq}: moves the hop's cursor there (forward only).
     * A cursor beyond the last packet committed for the hop stops at that packet, so a peer that claims more than it
     * was given cannot make later packets count as delivered. Returns whether a row was updated (false when the cursor
     * was already there or further).
     * <p>
     * Cursors only move forward, so an acknowledgement at or behind the cursor this store last read for the hop changes
     * nothing and is answered without the database: an idle long-poller repeats its cursor on every poll.
     */
    boolean acknowledge(String hop, long seq, Instant now) throws SQLException {
        if (seq <= 0) {
            return false;
        }
        Long known = cursors.get(hop);
        if (known != null && seq <= known) {
            return false;
        }
        try (Connection c = ds.getConnection()) {
            boolean pg = isPostgres(c);
            boolean moved;
            Long reached = null;
            if (pg) { // one round trip: whether the update moved the cursor, and where it now stands either way
                try (PreparedStatement up = c.prepareStatement("WITH up AS (" + ACKNOWLEDGE + " RETURNING acked_seq) "
                        + "SELECT EXISTS (SELECT 1 FROM up), "
                        + "COALESCE((SELECT acked_seq FROM up), (SELECT acked_seq FROM relay_hop_ack WHERE hop = ?))")) {
                    bindAcknowledge(up, hop, seq, now);
                    up.setString(5, hop);
                    try (ResultSet rs = up.executeQuery()) {
                        rs.next();
                        moved = rs.getBoolean(1);
                        long cursor = rs.getLong(2);
                        reached = rs.wasNull() ? null : cursor;
                    }
                }
            } else {
                try (PreparedStatement up = c.prepareStatement(ACKNOWLEDGE);
                        PreparedStatement q = c.prepareStatement("SELECT acked_seq FROM relay_hop_ack WHERE hop = ?")) {
                    bindAcknowledge(up, hop, seq, now);
                    moved = up.executeUpdate() > 0;
                    q.setString(1, hop);
                    try (ResultSet rs = q.executeQuery()) {
                        reached = rs.next() ? rs.getLong(1) : null;
                    }
                }
            }
            if (reached != null) {
                if (cursors.size() >= MAX_KNOWN_CURSORS) {
                    cursors.clear(); // more hops than peers: start over rather than grow
                }
                cursors.merge(hop, reached, Math::max);
            }
            return moved;
        }
    }

    private static final String ACKNOWLEDGE = "UPDATE relay_hop_ack SET acked_seq = GREATEST(acked_seq, LEAST(?, "
            + "(SELECT h.next_seq - 1 FROM relay_hop h WHERE h.hop = relay_hop_ack.hop))), acked_at = ? "
            + "WHERE hop = ? AND acked_seq < ?";

    private static void bindAcknowledge(PreparedStatement up, String hop, long seq, Instant now) throws SQLException {
        up.setLong(1, seq);
        up.setObject(2, utc(now));
        up.setString(3, hop);
        up.setLong(4, seq);
    }

    void markDead(List<Stored> rows, String reason, Instant now) throws SQLException {
        if (rows.isEmpty()) {
            return;
        }
        Object[] ids = rows.stream().map(Stored::id).toArray();
        try (Connection c = ds.getConnection(); PreparedStatement up = c.prepareStatement(
                "UPDATE relay_packet SET status = 'DEAD', done_at = ?, last_error = ? WHERE id = ANY(?) AND status = 'PENDING'")) {
            up.setObject(1, utc(now));
            up.setString(2, cut(reason));
            up.setArray(3, c.createArrayOf("bigint", ids));
            inTransaction(c, () -> {
                up.executeUpdate();
                indexDead(c, ids);
                return null;
            });
        }
    }

    /**
     * Lists the rows among {@code ids} that are now dead letters in relay_dead_letter (same transaction as the update).
     * Dead letters have a table of their own, not an index on relay_packet's status: such an index took an entry for
     * every packet stored (about a fifth of an insert's cost) to find the few that die.
     */
    private static void indexDead(Connection c, Object[] ids) throws SQLException {
        try (PreparedStatement dl = c.prepareStatement("INSERT INTO relay_dead_letter (id) SELECT p.id FROM relay_packet p "
                + "WHERE p.id = ANY(?) AND p.status = 'DEAD' AND NOT EXISTS (SELECT 1 FROM relay_dead_letter d WHERE d.id = p.id)")) {
            dl.setArray(1, c.createArrayOf("bigint", ids));
            dl.executeUpdate();
        }
    }

    /** A dead letter an operator put back in a hop's queue. */
    record Replay(long id, String packetId, String sender, String target, String deadHop, String hop, long hopSeq,
            long ttl, OffsetDateTime expiresAt, String replayedBy, OffsetDateTime replayedAt) {
    }

    /** Where a replayed packet goes now, given who handed it to this node (see {@link Routing#route}). */
    interface Rerouting {
        Routing.Decision route(Packet packet, String receivedFrom, boolean fromParent);
    }

    /**
     * Puts dead letter {@code id} back in the queue of the hop it died waiting for (a packet dead on arrival: of the
     * hop its route gives now), in one transaction: its row is locked, taken out of relay_dead_letter, given the next
     * hop_seq of that hop through relay_hop as the store does (so a hop cursor never skips it, and it leaves after the
     * packets queued before it), status PENDING, attempts reset, a new expiry, and a record in relay_replay.
     * <p>
     * The packet keeps its createdAt; its {@code ttl} (seconds from createdAt, in its body too, which the next hops
     * check) becomes its age plus {@code ttlSeconds} (null: the time it was last given, by its sender or its last
     * replay, cut to what is left). The ttl may not pass {@code maxTtl}: a next hop that already has the packet drops
     * it as a duplicate only while it remembers it, and a node remembers packets for the retention, which exceeds
     * max-ttl. Refused ({@link Refusal}, nothing changed): 404 no such packet, 409 not a dead letter (or routed to
     * another hop than the one it died waiting for, where it might arrive twice), 422 still unroutable or too old,
     * 400 a ttl past what is left.
     */
    Replay replay(long id, Long ttlSeconds, Duration maxTtl, String by, Rerouting rerouting, Instant now)
            throws SQLException {
        try (Connection c = ds.getConnection()) {
            return inTransaction(c, () -> replay(c, id, ttlSeconds, maxTtl, by, rerouting, now));
        }
    }

    private Replay replay(Connection c, long id, Long ttlSeconds, Duration maxTtl, String by, Rerouting rerouting,
            Instant now) throws SQLException {
        String packetId;
        String leg;
        String receivedFrom;
        String body;
        String deadHop;
        String status;
        String reason;
        OffsetDateTime deadAt;
        int attempts;
        // the row lock makes a second replay of the same packet wait here, and then find it no longer dead
        try (PreparedStatement q = c.prepareStatement("SELECT packet_id, leg, received_from, body, hop, status, last_error, "
                + "done_at, attempts FROM relay_packet WHERE id = ? FOR UPDATE")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                if (!rs.next()) {
                    throw new Refusal(404, "no dead letter " + id + " at relay node " + node
                            + " (ids are those GET /api/v1/relay/dead-letters lists)", "id", "dead-letter", null);
                }
                packetId = rs.getString(1);
                leg = rs.getString(2);
                receivedFrom = rs.getString(3);
                body = rs.getString(4);
                deadHop = rs.getString(5);
                status = rs.getString(6);
                reason = rs.getString(7);
                deadAt = rs.getObject(8, OffsetDateTime.class);
                attempts = rs.getInt(9);
            }
        }
        if (!"DEAD".equals(status)) {
            throw new Refusal(409, notDead(c, id, packetId, status), "id", "dead-letter", packetId);
        }
        try (PreparedStatement del = c.prepareStatement("DELETE FROM relay_dead_letter WHERE id = ?")) {
            del.setLong(1, id);
            if (del.executeUpdate() != 1) {
                throw new Refusal(409, "packet " + packetId + " (dead letter " + id + ") is not listed among the dead letters "
                        + "of node " + node + "; nothing replayed", "id", "dead-letter", packetId);
            }
        }
        Packet p;
        try {
            p = Packet.fromJson(HttpEndpoint.JSON.readTree(body));
        } catch (JsonProcessingException | Packet.InvalidPacketException e) {
            throw new SQLException("stored packet " + packetId + " (row " + id + ") cannot be read: " + e.getMessage(), e);
        }
        Routing.Decision route = rerouting.route(p, receivedFrom, "D".equals(leg));
        if (route.deadReason() != null) {
            throw new Refusal(422, "packet " + packetId + " still cannot be routed: " + route.deadReason()
                    + "; nothing replayed", "id", "route", packetId);
        }
        if (!DEAD_HOP.equals(deadHop) && !deadHop.equals(route.hop())) {
            throw new Refusal(409, "packet " + packetId + " died waiting for " + deadHop + " but is now routed to "
                    + route.hop() + " (the topology changed): the first may have it already, so replaying it to the other "
                    + "could deliver it twice; nothing replayed", "id", "same-hop", packetId);
        }
        String hop = route.hop();

        // the ttl counts from createdAt (in whole seconds, as packets carry it) and may not pass max-ttl
        long age = Math.max(0, ceilSeconds(Duration.between(p.createdAt(), now)));
        long room = maxTtl.toSeconds() - age;
        if (room < 1) {
            throw new Refusal(422, "packet " + packetId + " was created at " + p.createdAt() + ", longer ago than "
                    + "hub.relay.max-ttl (" + maxTtl + "): its ttl counts from then and may not pass max-ttl, which is as long "
                    + "as the next hops are sure to recognise a copy; it cannot be replayed", "ttl", "max-ttl", packetId);
        }
        long span;
        if (ttlSeconds != null) {
            if (ttlSeconds > room) {
                throw new Refusal(400, "ttl may be at most " + room + " s for packet " + packetId + ": it was created at "
                        + p.createdAt() + ", and its ttl, counted from then, may not pass hub.relay.max-ttl (" + maxTtl + ")",
                        "ttl", "max", packetId);
            }
            span = ttlSeconds;
        } else {
            span = Math.min(lastGiven(c, id, p.ttl()), room);
        }
        long ttl = age + span;
        Packet again = new Packet(p.packetId(), p.from(), p.to(), p.command(), p.parameters(), p.createdAt(), ttl,
                p.correlationId());
        String newBody = again.toJson().toString();
        long seq = reserve(c, hop, 1);
        try (PreparedStatement up = c.prepareStatement("UPDATE relay_packet SET hop = ?, hop_seq = ?, status = 'PENDING', "
                + "body = ?, size_bytes = ?, expires_at = ?, attempts = 0, last_error = NULL, done_at = NULL "
                + "WHERE id = ? AND status = 'DEAD'")) {
            up.setString(1, hop);
            up.setLong(2, seq);
            up.setString(3, newBody);
            up.setInt(4, utf8Length(newBody));
            up.setObject(5, utc(again.expiresAt()));
            up.setLong(6, id);
            if (up.executeUpdate() != 1) {
                throw new SQLException("dead letter " + id + " changed while it was locked for its replay");
            }
        }
        try (PreparedStatement rec = c.prepareStatement("INSERT INTO relay_replay (packet_row, packet_id, replayed_at, "
                + "replayed_by, dead_hop, dead_reason, dead_at, dead_attempts, hop, hop_seq, ttl_seconds, expires_at) "
                + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
            rec.setLong(1, id);
            rec.setString(2, packetId);
            rec.setObject(3, utc(now));
            rec.setString(4, by.length() <= 200 ? by : by.substring(0, 200));
            rec.setString(5, deadHop);
            rec.setString(6, reason);
            rec.setObject(7, deadAt);
            rec.setInt(8, attempts);
            rec.setString(9, hop);
            rec.setLong(10, seq);
            rec.setLong(11, span);
            rec.setObject(12, utc(again.expiresAt()));
            rec.executeUpdate();
        }
        return new Replay(id, packetId, p.from(), p.to(), deadHop, hop, seq, ttl, utc(again.expiresAt()), by, utc(now));
    }

    /** Why a packet that is not dead cannot be replayed, with its last replay if it had one. */
    private static String notDead(Connection c, long id, String packetId, String status) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT replayed_at, replayed_by, hop FROM relay_replay "
                + "WHERE packet_row = ? ORDER BY id DESC LIMIT 1")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                if (rs.next()) {
                    return "packet " + packetId + " (row " + id + ") is not a dead letter: it was replayed at "
                            + rs.getObject(1, OffsetDateTime.class) + " by " + rs.getString(2) + " and queued for "
                            + rs.getString(3) + "; nothing replayed";
                }
            }
        }
        return "packet " + packetId + " (row " + id + ") is not a dead letter (status " + status + "); nothing replayed";
    }

    /** The time packet {@code id} was given when it last set out: by its last replay, else its sender's ttl. */
    private static long lastGiven(Connection c, long id, long senderTtl) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT ttl_seconds FROM relay_replay WHERE packet_row = ? "
                + "ORDER BY id DESC LIMIT 1")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? rs.getLong(1) : senderTtl;
            }
        }
    }

    private static long ceilSeconds(Duration d) {
        return d.getSeconds() + (d.getNano() > 0 ? 1 : 0);
    }

    /**
     * Counts a failed attempt on packets still waiting. Not on one that died meanwhile (its ttl passed while the
     * request was on its way): its last_error is its dead letter's reason, which the failure would overwrite.
     */
    void markAttempt(List<Stored> rows, String error) throws SQLException {
        try (Connection c = ds.getConnection(); PreparedStatement up = c.prepareStatement(
                "UPDATE relay_packet SET attempts = attempts + 1, last_error = ? WHERE id = ? AND status = 'PENDING'")) {
            for (Stored r : rows) {
                up.setString(1, cut(error));
                up.setLong(2, r.id());
                up.addBatch();
            }
            up.executeBatch();
        }
    }

    /** The hops with packets waiting after their cursor, and the cursor (one index probe per hop). */
    static final String WAITING_HOPS = "SELECT a.hop, a.acked_seq FROM relay_hop_ack a WHERE EXISTS (SELECT 1 FROM relay_packet p "
            + "WHERE p.hop = a.hop AND p.hop_seq > a.acked_seq AND p." + NOT_SETTLED + ") ORDER BY a.hop";
    /** A hop's waiting packets past their ttl: a range of the (hop, hop_seq) index after the hop's cursor. */
    static final String EXPIRED_OF_HOP = "SELECT id, hop, last_error, attempts FROM relay_packet WHERE hop = ? AND hop_seq > ? AND "
            + NOT_SETTLED + " AND expires_at <= ? ORDER BY hop_seq LIMIT ?";
    /** Most packets one sweep turns into dead letters (the next sweep takes the rest). */
    static final int EXPIRE_BATCH = 1000;

    /**
     * Packets still waiting whose ttl has passed become dead letters, with the hop they waited for. Read hop by hop from
     * the hop's cursor on, through the (hop, hop_seq) index, so a sweep reads the packets still waiting and never the
     * delivered ones the table keeps for the retention (days): a join of the cursors with the packets was planned as a
     * scan of the whole table, which took most of a relay node's database time under load (0.8 s per sweep at 400,000
     * rows, every 5 s).
     */
    int expire(Instant now) throws SQLException {
        List<Object[]> due = new ArrayList<>();
        Map<String, Long> waiting = waitingHops();
        try (Connection c = ds.getConnection()) {
            // only the packets after each hop's cursor: those before it were delivered (their rows stay PENDING)
            try (PreparedStatement q = c.prepareStatement(EXPIRED_OF_HOP)) {
                for (Map.Entry<String, Long> hop : waiting.entrySet()) {
                    if (due.size() >= EXPIRE_BATCH) {
                        break;
                    }
                    q.setString(1, hop.getKey());
                    q.setLong(2, hop.getValue());
                    q.setObject(3, utc(now));
                    q.setInt(4, EXPIRE_BATCH - due.size());
                    try (ResultSet rs = q.executeQuery()) {
                        while (rs.next()) {
                            due.add(new Object[] {rs.getLong(1), rs.getString(2), rs.getString(3), rs.getInt(4)});
                        }
                    }
                }
            }
            if (due.isEmpty()) {
                return 0;
            }
            // not if its hop acknowledged it meanwhile
            try (PreparedStatement up = c.prepareStatement("UPDATE relay_packet SET status = 'DEAD', done_at = ?, last_error = ? "
                    + "WHERE id = ? AND status = 'PENDING' AND hop_seq > (SELECT a.acked_seq FROM relay_hop_ack a "
                    + "WHERE a.hop = relay_packet.hop)")) {
                for (Object[] d : due) {
                    String hop = (String) d[1];
                    String waited = hop.startsWith(Routing.SERVICE_PREFIX) ? "service " + hop.substring(4) : hop;
                    String why = "ttl expired at node " + node + " while waiting for " + waited + " to take it"
                            + ((int) d[3] > 0 ? " (" + d[3] + " attempts, last error: " + d[2] + ")" : " (never picked up)");
                    up.setObject(1, utc(now));
                    up.setString(2, cut(why));
                    up.setLong(3, (Long) d[0]);
                    up.addBatch();
                }
                inTransaction(c, () -> {
                    up.executeBatch();
                    indexDead(c, due.stream().map(d -> d[0]).toArray());
                    return null;
                });
            }
        }
        return due.size();
    }

    /**
     * Forgets delivered packets received before {@code before} (now minus the retention, which exceeds the largest
     * ttl: a packet sent again is still recognised as a duplicate while it could arrive). One pass over the table:
     * the node runs it seldom (RelayNode's purge period). Dead letters stay.
     */
    int purge(Instant before) throws SQLException {
        try (Connection c = ds.getConnection();
                PreparedStatement del = c.prepareStatement("DELETE FROM relay_packet WHERE (status = 'PENDING' AND received_at < ? "
                        + "AND hop_seq <= (SELECT a.acked_seq FROM relay_hop_ack a WHERE a.hop = relay_packet.hop)) "
                        + "OR (status = 'SENT' AND done_at < ?)")) {
            del.setObject(1, utc(before));
            del.setObject(2, utc(before));
            return del.executeUpdate();
        }
    }

    List<Dead> deadLetters(String target, String sender, long afterId, int limit) throws SQLException {
        StringBuilder sql = new StringBuilder("SELECT p.id, p.packet_id, p.sender, p.target, p.command, p.size_bytes, "
                + "p.created_at, p.done_at, p.hop, p.last_error, p.attempts FROM relay_dead_letter d JOIN relay_packet p "
                + "ON p.id = d.id WHERE d.id > ?");
        List<Object> args = new ArrayList<>();
        args.add(afterId);
        if (target != null) {
            sql.append(" AND p.target = ?");
            args.add(target);
        }
        if (sender != null) {
            sql.append(" AND p.sender = ?");
            args.add(sender);
        }
        sql.append(" ORDER BY d.id LIMIT ?");
        args.add(limit);
        List<Dead> out = new ArrayList<>();
        try (Connection c = ds.getConnection(); PreparedStatement q = c.prepareStatement(sql.toString())) {
            bind(q, args);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(new Dead(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4), rs.getString(5),
                            rs.getInt(6), rs.getObject(7, OffsetDateTime.class), rs.getObject(8, OffsetDateTime.class),
                            rs.getString(9), rs.getString(10), rs.getInt(11)));
                }
            }
        }
        return out;
    }

    List<Audit> audit(String sender, String target, String command, Instant from, Instant to, long afterId, int limit)
            throws SQLException {
        StringBuilder sql = new StringBuilder("SELECT id, packet_id, sender, target, command, size_bytes, created_at, "
                + "passed_at, received_from FROM relay_audit WHERE id > ?");
        List<Object> args = new ArrayList<>();
        args.add(afterId);
        if (sender != null) {
            sql.append(" AND sender = ?");
            args.add(sender);
        }
        if (target != null) {
            sql.append(" AND target = ?");
            args.add(target);
        }
        if (command != null) {
            sql.append(" AND command = ?");
            args.add(command);
        }
        if (from != null) {
            sql.append(" AND passed_at >= ?");
            args.add(utc(from));
        }
        if (to != null) {
            sql.append(" AND passed_at < ?");
            args.add(utc(to));
        }
        sql.append(" ORDER BY id LIMIT ?");
        args.add(limit);
        List<Audit> out = new ArrayList<>();
        try (Connection c = ds.getConnection(); PreparedStatement q = c.prepareStatement(sql.toString())) {
            bind(q, args);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(new Audit(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4), rs.getString(5),
                            rs.getInt(6), rs.getObject(7, OffsetDateTime.class), rs.getObject(8, OffsetDateTime.class),
                            rs.getString(9)));
                }
            }
        }
        return out;
    }

    /** Packets per hop and status, for the status page. */
    Map<String, Map<String, Long>> counts() throws SQLException {
        Map<String, Map<String, Long>> out = new TreeMap<>();
        try (Connection c = ds.getConnection();
                PreparedStatement q = c.prepareStatement("SELECT p.hop, CASE WHEN p.status = 'PENDING' AND p.hop_seq <= "
                        + "COALESCE(a.acked_seq, 0) THEN 'SENT' ELSE p.status END AS state, COUNT(*) FROM relay_packet p "
                        + "LEFT JOIN relay_hop_ack a ON a.hop = p.hop GROUP BY p.hop, CASE WHEN p.status = 'PENDING' AND p.hop_seq <= "
                        + "COALESCE(a.acked_seq, 0) THEN 'SENT' ELSE p.status END");
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                out.computeIfAbsent(rs.getString(1), k -> new TreeMap<>()).put(rs.getString(2), rs.getLong(3));
            }
        }
        return out;
    }

    private static void bind(PreparedStatement q, List<Object> args) throws SQLException {
        for (int i = 0; i < args.size(); i++) {
            q.setObject(i + 1, args.get(i));
        }
    }

    static OffsetDateTime utc(Instant i) {
        return i.atOffset(ZoneOffset.UTC);
    }

    private static String cut(String s) {
        return s == null || s.length() <= 2000 ? s : s.substring(0, 1999) + "…";
    }

    /**
     * The length of {@code s} in UTF-8, as {@code s.getBytes(UTF_8).length} gives it (an unpaired surrogate is one byte,
     * the '?' it is encoded as) without encoding it: packets are measured at every hop, and encoding each one to count
     * its bytes was 4 % of a relay node's CPU where packets carry Chinese text.
     */
    static int utf8Length(String s) {
        int n = s.length();
        int bytes = n;
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                continue;
            }
            if (c < 0x800) {
                bytes += 1;
            } else if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                bytes += 2; // the pair: 4 bytes for 2 chars
                i++;
            } else if (Character.isSurrogate(c)) {
                continue; // unpaired: encoded as '?'
            } else {
                bytes += 2;
            }
        }
        return bytes;
    }
}
