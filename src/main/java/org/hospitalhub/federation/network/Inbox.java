package org.hospitalhub.federation.network;

import java.security.PublicKey;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.micrometer.core.instrument.MeterRegistry;

/**
 * Receives messages from other nodes: checks the transmission (known sender, valid signature, time inside the window,
 * nonce never seen) and the origin's signature on the message, then stores it (table {@code fed_inbox}) and applies it
 * in one transaction and acknowledges at once; executing steps is left to {@link StepRunner}. A message already
 * received (same id) is acknowledged again and ignored. A central hub node stores messages for other nodes in its
 * outbox and relays them. Every refusal is logged and kept in {@code fed_rejection}. A transmission may carry several
 * messages ({@link #receiveBatch}): checked once, then each message on its own, in order.
 */
@ApplicationScoped
public class Inbox {

    private static final Logger LOG = Logger.getLogger(Inbox.class);

    /** The answer to a transmission: HTTP status and body fields. */
    public record Receipt(int status, String messageId, boolean duplicate, String error, String field) {
    }

    /** A message refused for what it says (signature and shape were fine). */
    static class Refusal extends RuntimeException {
        final int status;
        final String field;

        Refusal(int status, String field, String message) {
            super(message);
            this.status = status;
            this.field = field;
        }
    }

    private final Database db;
    private final NodeIdentity identity;
    private final Peers peers;
    private final Messages messages;
    private final FederationOutbox outbox;
    private final Executions executions;
    private final ObjectMapper mapper;
    private final MeterRegistry meters;
    private final Duration maxClockSkew;
    private final Optional<String> relayNode;

    public Inbox(Database db, NodeIdentity identity, Peers peers, Messages messages, FederationOutbox outbox,
            Executions executions, ObjectMapper mapper, MeterRegistry meters,
            @ConfigProperty(name = "hub.federation.max-clock-skew", defaultValue = "5m") Duration maxClockSkew,
            @ConfigProperty(name = "hub.federation.relay-node") Optional<String> relayNode) {
        this.db = db;
        this.identity = identity;
        this.peers = peers;
        this.messages = messages;
        this.outbox = outbox;
        this.executions = executions;
        this.mapper = mapper;
        this.meters = meters;
        this.maxClockSkew = maxClockSkew;
        this.relayNode = relayNode.map(String::strip).filter(s -> !s.isEmpty());
    }

    public Receipt receive(String node, String nonce, String timestamp, String signature, String body, String remote) {
        if (!identity.enabled()) {
            return new Receipt(503, null, false, "research federation is off on this node", null);
        }
        try {
            String text = body == null ? "" : body;
            Checked t = checkTransmission(node, nonce, timestamp, signature, text, remote);
            if (t.rejection() != null) {
                return t.rejection();
            }
            BatchReceipt r = storeAll(node, nonce, t.sender(), List.of(text), remote);
            return r.refusal() != null ? r.refusal() : r.messages().get(0);
        } catch (SQLException e) {
            LOG.errorf("Federation message from %s not stored (the sender will resend it): %s", node, e.getMessage());
            return new Receipt(503, null, false, "message not stored: database unavailable", null);
        }
    }

    /**
     * A transmission of several messages (a JSON array of messages, in the sender's order): the transmission is
     * checked once, then the messages are stored and applied in order, up to the first one that is not acknowledged
     * (the sender sends the rest again after it).
     */
    public BatchReceipt receiveBatch(String node, String nonce, String timestamp, String signature, String body, String remote) {
        if (!identity.enabled()) {
            return BatchReceipt.refused(new Receipt(503, null, false, "research federation is off on this node", null));
        }
        try {
            String text = body == null ? "" : body;
            Checked t = checkTransmission(node, nonce, timestamp, signature, text, remote);
            if (t.rejection() != null) {
                return BatchReceipt.refused(t.rejection());
            }
            JsonNode array;
            try {
                array = mapper.readTree(text);
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                array = null;
            }
            if (array == null || !array.isArray() || array.isEmpty()) {
                return BatchReceipt.refused(reject(400, node, remote, "malformed transmission: must be a non-empty JSON array of messages", "$"));
            }
            List<String> bodies = new ArrayList<>(array.size());
            for (JsonNode wire : array) {
                bodies.add(mapper.writeValueAsString(wire));
            }
            return storeAll(node, nonce, t.sender(), bodies, remote);
        } catch (SQLException | com.fasterxml.jackson.core.JsonProcessingException e) {
            LOG.errorf("Federation messages from %s not stored (the sender will resend them): %s", node, e.getMessage());
            return BatchReceipt.refused(new Receipt(503, null, false, "message not stored: database unavailable", null));
        }
    }

    /** The answer to a transmission of several messages: the transmission refused, or one receipt per message handled. */
    public record BatchReceipt(Receipt refusal, List<Receipt> messages) {
        static BatchReceipt refused(Receipt r) {
            return new BatchReceipt(r, List.of());
        }
    }

    /** The transmission's check: its sender, or why it is refused. */
    private record Checked(Peers.Peer sender, Receipt rejection) {
        static Checked refused(Receipt r) {
            return new Checked(null, r);
        }
    }

    /** Everything but the nonce, which is recorded in the transaction that stores the messages ({@link #storeAll}). */
    private Checked checkTransmission(String node, String nonce, String timestamp, String signature, String body, String remote)
            throws SQLException {
        for (String[] h : new String[][] { { Transmission.NODE, node }, { Transmission.NONCE, nonce },
                { Transmission.TIMESTAMP, timestamp }, { Transmission.SIGNATURE, signature } }) {
            if (h[1] == null || h[1].isBlank()) {
                return Checked.refused(reject(401, node, remote, "unsigned: header " + h[0] + " missing", h[0]));
            }
        }
        if (nonce.length() > 64 || node.length() > 100) {
            return Checked.refused(reject(401, null, remote, "header " + Transmission.NONCE + " or " + Transmission.NODE + " too long", null));
        }
        Optional<Peers.Peer> sender = peers.find(node);
        if (sender.isEmpty()) {
            return Checked.refused(reject(401, node, remote, "unknown node " + node, Transmission.NODE));
        }
        if (!NodeKeys.verify(sender.get().key(), Transmission.signedText(node, nonce, timestamp, body), signature)) {
            return Checked.refused(reject(401, node, remote, "signature does not verify with node " + node + "'s registered key",
                    Transmission.SIGNATURE));
        }
        Instant sentAt;
        try {
            sentAt = Instant.ofEpochMilli(Long.parseLong(timestamp.strip()));
        } catch (NumberFormatException e) {
            return Checked.refused(reject(401, node, remote, "timestamp must be epoch milliseconds", Transmission.TIMESTAMP));
        }
        Instant now = Instant.now();
        if (Duration.between(sentAt, now).abs().compareTo(maxClockSkew) > 0) {
            return Checked.refused(reject(401, node, remote, "expired: sent at " + sentAt + ", outside the window of " + maxClockSkew
                    + " around " + now, Transmission.TIMESTAMP));
        }
        return new Checked(sender.get(), null);
    }

    /** A message of a checked transmission whose shape and origin signature are fine, and whether it is for this node. */
    private record Opened(Messages.Message message, boolean forMe) {
    }

    /** Thrown inside {@link #storeAll}'s transaction to undo it when the message at {@code index} is refused. */
    private static final class RefusedAt extends RuntimeException {
        final int index;
        final Refusal refusal;

        RefusedAt(int index, Refusal refusal) {
            super(null, null, false, false);
            this.index = index;
            this.refusal = refusal;
        }
    }

    /**
     * The messages of a checked transmission from {@code node}, in order, up to the first one refused: each opened and
     * its origin verified, then the transmission's nonce and every message stored (once) and applied (or relayed) in
     * ONE transaction. On a loaded database every commit and round trip costs milliseconds, and a transmission often
     * carries a project's invitation with its steps, or a node's queued, running and succeeded reports. A message
     * refused for what it says undoes that transaction, which is done again with the messages before it only (they are
     * acknowledged, the refused one answered with its reason, the rest left for the sender to send again). A replayed
     * nonce refuses the whole transmission (409); a database failure answers 503 for all of it (the sender resends).
     */
    private BatchReceipt storeAll(String node, String nonce, Peers.Peer sender, List<String> bodies, String remote)
            throws SQLException {
        List<Opened> opened = new ArrayList<>();
        Refusal stop = null;
        for (String body : bodies) {
            try {
                opened.add(open(node, sender, body));
            } catch (Refusal refused) {
                stop = refused;
                break;
            }
        }
        int n = opened.size();
        Refusal refusedInApply = null;
        Messages.Message refusedMessage = null;
        boolean[] duplicate = new boolean[n];
        while (true) {
            int upTo = n;
            try {
                boolean fresh = db.inTransaction(c -> {
                    // the nonce, with the messages (one round trip): a replayed nonce stores nothing
                    boolean[] stored = storeNonce(c, node, nonce,
                            opened.subList(0, upTo).stream().map(Opened::message).toList());
                    if (stored == null) {
                        return false;
                    }
                    for (int i = 0; i < upTo; i++) {
                        Opened m = opened.get(i);
                        try {
                            if (!stored[i]) {
                                sameAsBefore(c, m.message());
                            }
                            duplicate[i] = !stored[i];
                            if (!duplicate[i]) {
                                if (m.forMe()) {
                                    apply(c, m.message());
                                } else {
                                    outbox.relay(c, m.message());
                                }
                            }
                        } catch (Refusal r) {
                            throw new RefusedAt(i, r);
                        }
                    }
                    return true;
                });
                if (!fresh) {
                    return BatchReceipt.refused(reject(409, node, remote, "replayed: nonce " + nonce + " of node " + node
                            + " already seen", Transmission.NONCE));
                }
                break;
            } catch (RefusedAt r) {
                n = r.index;
                refusedInApply = r.refusal;
                refusedMessage = opened.get(r.index).message();
            }
        }
        List<Receipt> out = new ArrayList<>(n + 1);
        for (int i = 0; i < n; i++) {
            Opened m = opened.get(i);
            meters.counter("hub.federation.messages.received", "type", m.message().type(), "outcome",
                    duplicate[i] ? "duplicate" : m.forMe() ? "applied" : "relayed").increment();
            if (duplicate[i]) {
                LOG.debugf("Federation message %s from %s received again: acknowledged, ignored", m.message().id(),
                        m.message().origin());
            }
            out.add(new Receipt(200, m.message().id(), duplicate[i], null, null));
        }
        if (refusedInApply != null) {
            out.add(reject(refusedInApply.status, node, remote, "message " + refusedMessage.id() + " (" + refusedMessage.type()
                    + ") refused: " + refusedInApply.getMessage(), refusedInApply.field));
        } else if (stop != null) {
            out.add(reject(stop.status, node, remote, stop.getMessage(), stop.field));
        }
        return new BatchReceipt(null, out);
    }

    /**
     * One message of a checked transmission from {@code node}, opened with its origin verified; a {@link Refusal} says
     * why not (recorded by the caller only if the messages before it are acknowledged).
     */
    private Opened open(String node, Peers.Peer sender, String body) throws SQLException {
        Messages.Message m;
        try {
            m = messages.open(body);
        } catch (Messages.MalformedMessageException e) {
            throw new Refusal(400, e.field(), "malformed message: " + e.getMessage());
        }
        if (m.origin().equals(identity.nodeId())) {
            throw new Refusal(400, "envelope.origin", "a message of this node's own came back");
        }
        Optional<Peers.Peer> origin = m.origin().equals(node) ? Optional.of(sender) : peers.find(m.origin());
        if (origin.isEmpty()) {
            throw new Refusal(401, "envelope.origin", "unknown origin node " + m.origin());
        }
        PublicKey originKey = origin.get().key();
        if (!Messages.verifyOrigin(m, originKey)) {
            throw new Refusal(401, "signature", "message " + m.id() + ": origin signature does not verify with node "
                    + m.origin() + "'s registered key");
        }
        boolean forMe = m.to().equals(identity.nodeId());
        if (!forMe) {
            if (relayNode.isEmpty() || !relayNode.get().equals(identity.nodeId())) {
                throw new Refusal(400, "envelope.to", "message for node " + m.to() + ": this node is not the central hub");
            }
            if (peers.find(m.to()).isEmpty()) {
                throw new Refusal(400, "envelope.to", "message for unknown node " + m.to());
            }
        }
        return new Opened(m, forMe);
    }

    /**
     * The transmission's nonce recorded and, in the same statement (one round trip per transmission, not one per
     * message), its messages stored once each, hop {@code node}: null if the nonce was seen before (replayed: nothing
     * stored), else whether each message was stored now (false: received before, or earlier in this transmission).
     * On PostgreSQL the statement also takes a lock, held until the receipt commits, on each project whose invitation
     * or steps it carries ({@link #PROJECT_LOCK}).
     */
    private static boolean[] storeNonce(Connection c, String node, String nonce, List<Messages.Message> ms) throws SQLException {
        boolean[] stored = new boolean[ms.size()];
        if (ms.isEmpty()) {
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO fed_nonce (nonce, node_id, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")) {
                ins.setString(1, node + "/" + nonce);
                ins.setString(2, node);
                ins.setObject(3, Database.utc(Instant.now()));
                return ins.executeUpdate() == 1 ? stored : null;
            }
        }
        // each id once (its first occurrence), so that a later one is compared with what its first stored
        Map<String, Messages.Message> first = new LinkedHashMap<>();
        for (Messages.Message m : ms) {
            first.putIfAbsent(m.id(), m);
        }
        List<Messages.Message> rows = new ArrayList<>(first.values());
        Set<String> inserted = new HashSet<>();
        List<String> locked = Database.isPostgres(c) ? ms.stream()
                .filter(m -> Messages.INVITATION.equals(m.type()) || Messages.STEP.equals(m.type()))
                .map(Messages.Message::projectId).distinct().sorted().toList() : List.of();
        try (PreparedStatement ins = c.prepareStatement("WITH seen AS (INSERT INTO fed_nonce (nonce, node_id, seen_at) "
                + "VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1), stored AS (INSERT INTO fed_inbox (message_id, origin, "
                + "hop, destination, message_type, project_id, message, received_at) SELECT m.id, m.origin, ?, m.destination, "
                + "m.type, m.project, m.message, ? FROM unnest(?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], "
                + "?::varchar[], ?::varchar[]) AS m(id, origin, destination, type, project, message) "
                + "WHERE EXISTS (SELECT 1 FROM seen) ON CONFLICT DO NOTHING RETURNING message_id) "
                + "SELECT (SELECT COUNT(*) FROM seen), ARRAY(SELECT message_id FROM stored)"
                + (locked.isEmpty() ? "" : ", (SELECT COUNT(*) FROM (" + PROJECT_LOCK + ") locked)"))) {
            OffsetDateTime now = Database.utc(Instant.now());
            ins.setString(1, node + "/" + nonce);
            ins.setString(2, node);
            ins.setObject(3, now);
            ins.setString(4, node);
            ins.setObject(5, now);
            ins.setArray(6, c.createArrayOf("varchar", rows.stream().map(Messages.Message::id).toArray()));
            ins.setArray(7, c.createArrayOf("varchar", rows.stream().map(Messages.Message::origin).toArray()));
            ins.setArray(8, c.createArrayOf("varchar", rows.stream().map(Messages.Message::to).toArray()));
            ins.setArray(9, c.createArrayOf("varchar", rows.stream().map(Messages.Message::type).toArray()));
            ins.setArray(10, c.createArrayOf("varchar", rows.stream().map(Messages.Message::projectId).toArray()));
            ins.setArray(11, c.createArrayOf("varchar", rows.stream().map(Messages.Message::envelope).toArray()));
            if (!locked.isEmpty()) {
                ins.setArray(12, c.createArrayOf("varchar", locked.toArray()));
            }
            try (ResultSet rs = ins.executeQuery()) {
                rs.next();
                if (rs.getLong(1) == 0) {
                    return null;
                }
                for (Object id : (Object[]) rs.getArray(2).getArray()) {
                    inserted.add((String) id);
                }
            }
        }
        for (int i = 0; i < ms.size(); i++) {
            stored[i] = inserted.remove(ms.get(i).id()); // true for its first occurrence only
        }
        return stored;
    }

    /** The first key of {@link #PROJECT_LOCK}'s advisory locks (the second is the project id's hash): "FE". */
    private static final int PROJECT_LOCK_CLASS = 0x4645;

    /**
     * Locks, until the transaction ends, the projects named by an array parameter (sorted, so that two receipts take
     * them in the same order): a project's invitation and a step of it, or two of its steps, received at the same time
     * (a sender lets a study's steps follow the message before them before that is acknowledged) are applied one after
     * the other. Without it, each could commit unseen by the other (the step stored as arriving before its invitation,
     * the invitation finding no step): the step would wait for the runner's next poll, its queued state never reported.
     */
    static final String PROJECT_LOCK = "SELECT pg_advisory_xact_lock(" + PROJECT_LOCK_CLASS + ", hashtext(p)) "
            + "FROM (SELECT p FROM unnest(?::varchar[]) WITH ORDINALITY AS u(p, n) ORDER BY n) ordered";

    /** A message id received before must be the same message: else 409. */
    private void sameAsBefore(Connection c, Messages.Message m) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT message FROM fed_inbox WHERE message_id = ?")) {
            q.setString(1, m.id());
            try (ResultSet rs = q.executeQuery()) {
                if (rs.next() && !rs.getString(1).equals(m.envelope())) {
                    throw new Refusal(409, "envelope.id", "message id " + m.id() + " was received before with other content");
                }
            }
        }
    }

    private Receipt reject(int status, String node, String remote, String reason, String field) {
        LOG.warnf("Federation message rejected (%d) from %s (claimed node %s): %s", status, remote, node, reason);
        meters.counter("hub.federation.messages.rejected", "status", String.valueOf(status)).increment();
        try {
            db.inTransaction(c -> {
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_rejection (received_at, claimed_node, "
                        + "remote_addr, http_status, reason) VALUES (?, ?, ?, ?, ?)")) {
                    ins.setObject(1, Database.utc(Instant.now()));
                    ins.setString(2, node == null ? null : node.length() > 100 ? node.substring(0, 100) : node);
                    ins.setString(3, remote);
                    ins.setInt(4, status);
                    ins.setString(5, reason.length() > 1000 ? reason.substring(0, 1000) : reason);
                    return ins.executeUpdate();
                }
            });
        } catch (SQLException e) {
            LOG.warnf("Cannot record the rejection: %s", e.getMessage());
        }
        return new Receipt(status, null, false, reason, field);
    }

    /** A message of this node to itself (the initiator taking part in its own project): applied in the same transaction. */
    void applyLocal(Connection c, Messages.Message m) throws SQLException {
        apply(c, m);
    }

    private void apply(Connection c, Messages.Message m) throws SQLException {
        switch (m.type()) {
            case Messages.INVITATION -> invitation(c, m);
            case Messages.INVITATION_RESPONSE -> response(c, m);
            case Messages.STEP -> step(c, m);
            case Messages.STEP_STATUS -> status(c, m);
            case Messages.STEP_RETRY -> retry(c, m);
            default -> throw new Refusal(400, "envelope.type", "unknown type " + m.type());
        }
    }

    private void invitation(Connection c, Messages.Message m) throws SQLException {
        JsonNode p = m.payload();
        String title = requireText(p, "title", 500);
        String sharing = requireText(p, "sharingLevel", 30);
        if (!Projects.SHARING_LEVELS.contains(sharing)) {
            throw new Refusal(400, "payload.sharingLevel", "must be one of " + Projects.SHARING_LEVELS);
        }
        JsonNode invited = p.get("invited");
        if (invited == null || !invited.isArray()) {
            throw new Refusal(400, "payload.invited", "required array of node ids");
        }
        boolean me = false;
        for (JsonNode n : invited) {
            me |= n.asText().equals(identity.nodeId());
        }
        if (!me) {
            throw new Refusal(400, "payload.invited", "does not list this node (" + identity.nodeId() + ")");
        }
        boolean self = m.origin().equals(identity.nodeId());
        // whether its initiator's invitations are accepted automatically here (or it is this node's own), the project
        // stored unless it was before, and whether steps of it arrived before it (they are reported once it is
        // accepted): one statement
        boolean auto;
        boolean stepsBefore;
        try (PreparedStatement ins = c.prepareStatement("WITH peer AS (SELECT (? OR COALESCE((SELECT n.auto_accept FROM "
                + "fed_node n WHERE n.node_id = ?), FALSE)) AS auto), ins AS (INSERT INTO fed_project (project_id, title, "
                + "initiator, sharing_level, invited, local_status, created_at, decided_at, decided_by) SELECT ?, ?, ?, ?, ?, "
                + "CASE WHEN peer.auto THEN 'ACCEPTED' ELSE 'INVITED' END, CAST(? AS TIMESTAMP WITH TIME ZONE), CASE WHEN "
                + "peer.auto THEN CAST(? AS TIMESTAMP WITH TIME ZONE) END, CASE WHEN peer.auto THEN 'auto-accept' END FROM peer "
                + "ON CONFLICT (project_id) DO NOTHING RETURNING 1) SELECT (SELECT COUNT(*) FROM ins), EXISTS (SELECT 1 FROM "
                + "fed_execution WHERE project_id = ? AND node_id = ?), (SELECT auto FROM peer)")) {
            ins.setBoolean(1, self);
            ins.setString(2, m.origin());
            ins.setString(3, m.projectId());
            ins.setString(4, title);
            ins.setString(5, m.origin());
            ins.setString(6, sharing);
            ins.setString(7, invited.toString());
            ins.setObject(8, Database.utc(m.createdAt()));
            ins.setObject(9, Database.utc(Instant.now()));
            ins.setString(10, m.projectId());
            ins.setString(11, identity.nodeId());
            try (ResultSet rs = ins.executeQuery()) {
                rs.next();
                if (rs.getLong(1) == 0) {
                    return; // the same invitation again
                }
                stepsBefore = rs.getBoolean(2);
                auto = rs.getBoolean(3);
            }
        }
        Executions.initiatorStored(m.projectId(), m.origin());
        LOG.infof("Research project %s (%s) from %s: %s", m.projectId(), title, m.origin(), auto ? "accepted automatically" : "invited");
        if (auto && !self) {
            answered(c, m.projectId(), m.origin(), true, stepsBefore);
        }
    }

    /** This node accepted or declined: tell the initiator; if accepted, report the steps already received as queued. */
    void answered(Connection c, String projectId, String initiator, boolean accepted) throws SQLException {
        answered(c, projectId, initiator, accepted, true);
    }

    /** As above; {@code stepsBefore} false: no step of the project has been received (nothing to look for). */
    private void answered(Connection c, String projectId, String initiator, boolean accepted, boolean stepsBefore)
            throws SQLException {
        ObjectNode p = mapper.createObjectNode();
        p.put("node", identity.nodeId());
        p.put("accepted", accepted);
        outbox.enqueue(c, initiator, Messages.INVITATION_RESPONSE, projectId, p);
        if (accepted && stepsBefore) {
            for (Executions.Execution e : executions.ofProject(c, projectId)) {
                if (e.nodeId().equals(identity.nodeId())) {
                    executions.report(c, e, null);
                }
            }
        }
    }

    private void response(Connection c, Messages.Message m) throws SQLException {
        Projects.Project project = Projects.find(c, m.projectId())
                .orElseThrow(() -> new Refusal(400, "envelope.projectId", "unknown project"));
        if (!project.initiator().equals(identity.nodeId())) {
            throw new Refusal(400, "envelope.projectId", "this node did not initiate the project");
        }
        boolean accepted = m.payload().path("accepted").asBoolean(false);
        try (PreparedStatement up = c.prepareStatement("UPDATE fed_participant SET response = ?, responded_at = ? "
                + "WHERE project_id = ? AND node_id = ?")) {
            up.setString(1, accepted ? "ACCEPTED" : "DECLINED");
            up.setObject(2, Database.utc(Instant.now()));
            up.setString(3, m.projectId());
            up.setString(4, m.origin());
            if (up.executeUpdate() != 1) {
                throw new Refusal(403, "envelope.origin", "node " + m.origin() + " was not invited to the project");
            }
        }
        LOG.infof("Research project %s: node %s %s", m.projectId(), m.origin(), accepted ? "accepted" : "declined");
    }

    private void step(Connection c, Messages.Message m) throws SQLException {
        JsonNode p = m.payload();
        String stepId = requireText(p, "stepId", 64);
        String kind = requireText(p, "kind", 20);
        if (!Projects.KINDS.contains(kind)) {
            throw new Refusal(400, "payload.kind", "must be one of " + Projects.KINDS);
        }
        JsonNode seqNode = p.get("seq");
        if (seqNode == null || !seqNode.canConvertToInt() || seqNode.asInt() < 1) {
            throw new Refusal(400, "payload.seq", "required positive integer");
        }
        int seq = seqNode.asInt();
        JsonNode definition = p.get("definition");
        if (definition == null || !definition.isObject()) {
            throw new Refusal(400, "payload.definition", "required object");
        }
        JsonNode dependsOn = p.path("dependsOn");
        if (!dependsOn.isObject()) {
            throw new Refusal(400, "payload.dependsOn", "must be an object of role: stepId");
        }
        String checksum = Projects.checksum(kind, definition, dependsOn);
        if (!checksum.equals(p.path("checksum").asText())) {
            throw new Refusal(400, "payload.checksum", "does not match the definition");
        }
        // the project (if its invitation has arrived), this step id received before or another step under this number,
        // and the step stored with its execution queued if none stands in the way: one statement
        Projects.Step received = new Projects.Step(stepId, m.projectId(), seq, kind, definition.toString(), dependsOn.toString(),
                checksum, m.origin(), m.createdAt());
        Executions.Received r = executions.receive(c, received, m.origin());
        String localStatus = r.localStatus();
        if (r.initiator() != null && !r.initiator().equals(m.origin())) {
            throw new Refusal(403, "envelope.origin", "only the project's initiator " + r.initiator() + " sends its steps");
        }
        if (r.existingStepId() != null) {
            if (!r.existingStepId().equals(stepId)) {
                throw new Refusal(409, "payload.seq", "step number " + seq + " of the project is step " + r.existingStepId());
            }
            if (r.existingChecksum().equals(checksum) && r.existingProjectId().equals(m.projectId())) {
                return; // the same step again, under another message id: ignored
            }
            throw new Refusal(409, "payload.stepId", "step " + stepId + " was received before with another definition");
        }
        Optional<Executions.Execution> queued = r.queued();
        if (queued.isPresent() && "ACCEPTED".equals(localStatus)) {
            executions.report(c, queued.get(), null, received);
        }
    }

    /**
     * The invited nodes of projects this node initiated, and the project of their steps: neither changes once
     * committed, so the reports of a study (a few per step and node) do not read them again.
     */
    private final Map<String, List<String>> initiatedInvited = Lru.of(10_000);
    private final Map<String, String> initiatedSteps = Lru.of(100_000);

    private void status(Connection c, Messages.Message m) throws SQLException {
        List<String> invited = initiatedInvited.get(m.projectId());
        if (invited == null) {
            Projects.Project project = Projects.find(c, m.projectId())
                    .orElseThrow(() -> new Refusal(400, "envelope.projectId", "unknown project"));
            if (!project.initiator().equals(identity.nodeId())) {
                throw new Refusal(400, "envelope.projectId", "this node did not initiate the project");
            }
            invited = project.invited();
            initiatedInvited.put(m.projectId(), invited);
        }
        JsonNode p = m.payload();
        if (!m.origin().equals(p.path("node").asText())) {
            throw new Refusal(403, "payload.node", "a node reports only its own executions");
        }
        if (!invited.contains(m.origin())) {
            throw new Refusal(403, "envelope.origin", "node " + m.origin() + " was not invited to the project");
        }
        requireText(p, "stepId", 64);
        try {
            Executions.Status.valueOf(p.path("status").asText());
        } catch (IllegalArgumentException e) {
            throw new Refusal(400, "payload.status", "must be one of QUEUED, RUNNING, SUCCEEDED, FAILED");
        }
        String stepId = p.path("stepId").asText();
        String stepProject = initiatedSteps.get(stepId);
        if (stepProject == null) {
            stepProject = Projects.step(c, stepId).map(Projects.Step::projectId).orElse(null);
            if (m.projectId().equals(stepProject)) {
                initiatedSteps.put(stepId, stepProject); // a committed step of a project this node initiated
            }
        }
        if (!m.projectId().equals(stepProject)) {
            throw new Refusal(400, "payload.stepId", "not a step of the project");
        }
        executions.applyReport(c, m.projectId(), m.origin(), p);
    }

    private void retry(Connection c, Messages.Message m) throws SQLException {
        Projects.Project project = Projects.find(c, m.projectId())
                .orElseThrow(() -> new Refusal(400, "envelope.projectId", "unknown project"));
        if (!project.initiator().equals(m.origin())) {
            throw new Refusal(403, "envelope.origin", "only the initiator asks for a retry");
        }
        String stepId = requireText(m.payload(), "stepId", 64);
        executions.transition(c, stepId, Executions.Status.FAILED, Executions.Status.QUEUED,
                "retry requested by " + m.origin(), false, true, null, null);
    }

    private static String requireText(JsonNode p, String field, int max) {
        JsonNode v = p.get(field);
        if (v == null || !v.isTextual() || v.asText().isBlank()) {
            throw new Refusal(400, "payload." + field, "required text");
        }
        if (v.asText().length() > max) {
            throw new Refusal(400, "payload." + field, "at most " + max + " characters");
        }
        return v.asText();
    }

    /** The rejected messages, newest first. */
    public List<Map<String, Object>> rejections(int limit) throws SQLException {
        List<Map<String, Object>> out = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT id, received_at, claimed_node, "
                + "remote_addr, http_status, reason FROM fed_rejection ORDER BY id DESC LIMIT " + Math.max(1, Math.min(limit, 1000)));
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                Map<String, Object> r = new java.util.LinkedHashMap<>();
                r.put("id", rs.getLong(1));
                r.put("receivedAt", rs.getObject(2, java.time.OffsetDateTime.class).toInstant().toString());
                r.put("claimedNode", rs.getString(3));
                r.put("remoteAddress", rs.getString(4));
                r.put("status", rs.getInt(5));
                r.put("reason", rs.getString(6));
                out.add(r);
            }
        }
        return out;
    }
}
