package org.hospitalhub.relay;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import javax.sql.DataSource;

import org.hospitalhub.relay.client.Packet;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The consultation service of a level ({@code consultation@city-a}, or {@code consultation@city} from below): a
 * {@code consult.request} is offered ({@code consult.offer}) to every hospital the topology lists; the first
 * {@code consult.accept} wins ({@code consult.assigned} to it, {@code consult.taken} to the others and to any later
 * accept, {@code consult.accepted} to the requester). Nobody accepting within {@code acceptWithin}: the request goes
 * to {@code escalateTo} ({@code consult.escalated} to the requester) or the requester gets {@code consult.unanswered};
 * the offers are withdrawn ({@code consult.withdrawn}). Replies between the hospital and the requester travel as
 * ordinary packets with {@code correlationId} = the consultation id. Outgoing packets have ids derived from the
 * consultation, so handling a packet again after a crash sends nothing twice.
 */
final class ConsultationService implements LocalService {

    static final String NAME = "consultation";
    private static final Logger LOG = Logger.getLogger(ConsultationService.class);

    private final RelayNode node;
    private final DataSource ds;
    private final Topology.Consultation config;
    private final String self;

    ConsultationService(RelayNode node, DataSource ds, Topology.Consultation config) {
        this.node = node;
        this.ds = ds;
        this.config = config;
        this.self = NAME + "@" + node.id();
    }

    @Override
    public void onPacket(Packet p) throws Exception {
        switch (p.command()) {
            case "consult.request" -> request(p);
            case "consult.accept" -> accept(p);
            default -> LOG.warnf("Consultation service %s: command '%s' from %s ignored (consult.request, consult.accept)", self,
                    p.command(), p.from());
        }
    }

    private void request(Packet p) throws Exception {
        // an escalated request names its original requester
        String requester = p.from().startsWith(NAME + "@") && p.parameters().hasNonNull("requester")
                ? p.parameters().get("requester").asText() : p.from();
        String id = p.parameters().hasNonNull("consultationId") ? p.parameters().get("consultationId").asText() : p.packetId();
        Instant now = node.clock.instant();
        int inserted;
        try (Connection c = ds.getConnection();
                PreparedStatement ins = c.prepareStatement("INSERT INTO relay_consultation (consultation_id, requester, "
                        + "request_body, offered_to, status, created_at, deadline) VALUES (?, ?, ?, ?, 'OPEN', ?, ?) ON CONFLICT DO NOTHING")) {
            ins.setString(1, id);
            ins.setString(2, requester);
            ins.setString(3, p.toJson().toString());
            ins.setString(4, String.join(",", config.hospitals()));
            ins.setObject(5, PacketStore.utc(now));
            ins.setObject(6, PacketStore.utc(now.plus(config.acceptWithin())));
            inserted = ins.executeUpdate();
        }
        if (inserted == 0) {
            LOG.debugf("Consultation %s already taken in; its offers went out", id);
        }
        for (String h : config.hospitals()) {
            ObjectNode params = p.parameters().deepCopy();
            params.put("consultationId", id).put("requester", requester);
            send(id + ":offer:" + h, h, "consult.offer", params, id, p.ttl());
        }
        LOG.infof("Consultation %s from %s offered to %s", id, requester, config.hospitals());
    }

    private void accept(Packet p) throws Exception {
        String id = p.parameters().path("consultationId").asText(p.correlationId());
        if (id == null || id.isBlank()) {
            send(p.packetId() + ":refused", p.from(), "consult.refused", params(null).put("reason",
                    "consult.accept needs parameters.consultationId"), p.packetId(), p.ttl());
            return;
        }
        if (!config.hospitals().contains(p.from())) {
            send(p.packetId() + ":refused", p.from(), "consult.refused", params(id).put("reason",
                    p.from() + " is not a hospital this service offers consultations to"), id, p.ttl());
            return;
        }
        String requester;
        String winner;
        try (Connection c = ds.getConnection()) {
            try (PreparedStatement up = c.prepareStatement("UPDATE relay_consultation SET status = 'ACCEPTED', accepted_by = ?, "
                    + "decided_at = ? WHERE consultation_id = ? AND status = 'OPEN'")) {
                up.setString(1, p.from());
                up.setObject(2, PacketStore.utc(node.clock.instant()));
                up.setString(3, id);
                up.executeUpdate();
            }
            try (PreparedStatement q = c.prepareStatement("SELECT requester, accepted_by, status FROM relay_consultation "
                    + "WHERE consultation_id = ?")) {
                q.setString(1, id);
                try (ResultSet rs = q.executeQuery()) {
                    if (!rs.next()) {
                        send(p.packetId() + ":refused", p.from(), "consult.refused", params(id).put("reason",
                                "no consultation " + id + " at " + self), id, p.ttl());
                        return;
                    }
                    requester = rs.getString(1);
                    winner = rs.getString(2);
                    if (!"ACCEPTED".equals(rs.getString(3))) {
                        send(p.packetId() + ":refused", p.from(), "consult.refused", params(id).put("reason",
                                "consultation " + id + " is " + rs.getString(3) + ": too late"), id, p.ttl());
                        return;
                    }
                }
            }
        }
        if (!p.from().equals(winner)) {
            send(id + ":taken:" + p.from(), p.from(), "consult.taken", params(id).put("by", winner), id, p.ttl());
            return;
        }
        send(id + ":assigned", winner, "consult.assigned", params(id).put("requester", requester), id, p.ttl());
        send(id + ":accepted", requester, "consult.accepted", params(id).put("by", winner), id, p.ttl());
        for (String h : config.hospitals()) {
            if (!h.equals(winner)) {
                send(id + ":taken:" + h, h, "consult.taken", params(id).put("by", winner), id, p.ttl());
            }
        }
        LOG.infof("Consultation %s accepted by %s", id, winner);
    }

    /** Requests nobody accepted in time: escalated, or reported to the requester; the offers are withdrawn. */
    void checkDeadlines() throws Exception {
        Instant now = node.clock.instant();
        List<String[]> due = new ArrayList<>();
        try (Connection c = ds.getConnection();
                PreparedStatement q = c.prepareStatement("SELECT consultation_id, requester, request_body FROM relay_consultation "
                        + "WHERE status = 'OPEN' AND deadline <= ? ORDER BY deadline LIMIT 100")) {
            q.setObject(1, PacketStore.utc(now));
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    due.add(new String[] {rs.getString(1), rs.getString(2), rs.getString(3)});
                }
            }
        }
        for (String[] d : due) {
            String id = d[0];
            String requester = d[1];
            String status = config.escalateTo().isPresent() ? "ESCALATED" : "UNANSWERED";
            int n;
            try (Connection c = ds.getConnection();
                    PreparedStatement up = c.prepareStatement("UPDATE relay_consultation SET status = ?, decided_at = ? "
                            + "WHERE consultation_id = ? AND status = 'OPEN'")) {
                up.setString(1, status);
                up.setObject(2, PacketStore.utc(now));
                up.setString(3, id);
                n = up.executeUpdate();
            }
            if (n == 0) {
                continue; // accepted meanwhile
            }
            JsonNode original = HttpEndpoint.JSON.readTree(d[2]);
            long ttl = original.path("ttl").asLong(600);
            String reason = "nobody of " + config.hospitals() + " accepted within " + config.acceptWithin();
            if (config.escalateTo().isPresent()) {
                ObjectNode params = ((ObjectNode) original.path("parameters")).deepCopy();
                params.put("consultationId", id).put("requester", requester).put("escalatedFrom", self);
                send(id + ":escalate", config.escalateTo().get(), "consult.request", params, id, ttl);
                send(id + ":escalated", requester, "consult.escalated", params(id).put("to", config.escalateTo().get())
                        .put("reason", reason), id, ttl);
            } else {
                send(id + ":unanswered", requester, "consult.unanswered", params(id).put("reason", reason), id, ttl);
            }
            for (String h : config.hospitals()) {
                send(id + ":withdrawn:" + h, h, "consult.withdrawn", params(id).put("reason", reason), id, ttl);
            }
            LOG.infof("Consultation %s %s: %s", id, status.toLowerCase(), reason);
        }
    }

    private ObjectNode params(String id) {
        ObjectNode n = HttpEndpoint.JSON.createObjectNode();
        if (id != null) {
            n.put("consultationId", id);
        }
        return n;
    }

    /** Sends with the ttl of the packet this answers (the asker's choice of how long an answer is useful). */
    private void send(String packetId, String to, String command, ObjectNode params, String correlationId, long ttl)
            throws Exception {
        String id = packetId.replace('@', '_'); // packet ids are letters, digits and . _ : -
        if (id.length() > 100) {
            id = Integer.toHexString(id.hashCode()) + ":" + id.substring(id.length() - 90);
        }
        Packet out = new Packet(id, self, to, command, params, node.clock.instant(), ttl, correlationId);
        node.sendLocal(out).get(30, TimeUnit.SECONDS);
    }
}
