package org.hospitalhub.sync;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;

import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * Disagreements between the legacy endpoint and the hub in shadow mode: counted in
 * {@code hub_gray_mismatches_total{flow,reason}} and recorded in table gray_mismatch (one row per event) for
 * reconciliation. Recording never changes the caller's answer: a failure to record is logged, and still counted.
 */
@ApplicationScoped
public class GrayMismatches {

    private static final Logger LOG = Logger.getLogger(GrayMismatches.class);

    /** Legacy accepted (2xx), the hub refused the event. */
    public static final String HUB_REJECTED = "hub-rejected";
    /** Legacy refused (4xx/5xx), the hub accepted the event. */
    public static final String LEGACY_REJECTED = "legacy-rejected";
    /** Legacy did not answer (down, timeout), the hub accepted the event. */
    public static final String LEGACY_UNAVAILABLE = "legacy-unavailable";
    /** Legacy accepted, the hub could not store the event (its database failed). */
    public static final String HUB_STORE_FAILED = "hub-store-failed";

    public record Mismatch(long id, String flow, String eventId, String hospital, String source, String reason,
            Integer legacyStatus, String hubOutcome, String hubDetail, OffsetDateTime recordedAt) {
    }

    private final Database db;
    private final MeterRegistry registry;

    public GrayMismatches(Database db, MeterRegistry registry) {
        this.db = db;
        this.registry = registry;
    }

    /** Records one mismatch per event id (one row with no id when none could be read). */
    public void record(String flow, List<String> eventIds, String hospital, String source, String reason,
            Integer legacyStatus, String hubOutcome, String hubDetail) {
        List<String> ids = eventIds.isEmpty() ? java.util.Collections.singletonList(null) : eventIds;
        Counter.builder("hub.gray.mismatches").description("Shadow-mode requests where legacy and the hub disagreed")
                .tags("flow", flow, "reason", reason).register(registry).increment(ids.size());
        LOG.warnf("Gray switch mismatch on flow %s (%s): legacy %s, hub %s, events %s", flow, reason,
                legacyStatus == null ? "no answer" : legacyStatus, hubOutcome, ids);
        try {
            db.inTransaction(c -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO gray_mismatch (flow, event_id, hospital, "
                        + "source, reason, legacy_status, hub_outcome, hub_detail, recorded_at) "
                        + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                    OffsetDateTime now = Database.utc(Instant.now());
                    for (String id : ids) {
                        ps.setString(1, flow);
                        ps.setString(2, id);
                        ps.setString(3, hospital);
                        ps.setString(4, source);
                        ps.setString(5, reason);
                        if (legacyStatus == null) {
                            ps.setNull(6, Types.INTEGER);
                        } else {
                            ps.setInt(6, legacyStatus);
                        }
                        ps.setString(7, hubOutcome);
                        ps.setString(8, hubDetail);
                        ps.setObject(9, now);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
                return null;
            });
        } catch (SQLException | RuntimeException e) {
            LOG.errorf("Could not record the gray switch mismatch of flow %s, events %s: %s", flow, ids, e.getMessage());
        }
    }

    /** The newest mismatches of a flow, newest first. */
    public List<Mismatch> recent(String flow, int limit) throws SQLException {
        List<Mismatch> out = new ArrayList<>();
        try (Connection c = db.connection();
                PreparedStatement ps = c.prepareStatement("SELECT id, flow, event_id, hospital, source, reason, "
                        + "legacy_status, hub_outcome, hub_detail, recorded_at FROM gray_mismatch WHERE flow = ? "
                        + "ORDER BY id DESC LIMIT ?")) {
            ps.setString(1, flow);
            ps.setInt(2, limit);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    int status = rs.getInt(7);
                    out.add(new Mismatch(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4),
                            rs.getString(5), rs.getString(6), rs.wasNull() ? null : status, rs.getString(8),
                            rs.getString(9), rs.getObject(10, OffsetDateTime.class)));
                }
            }
        }
        return out;
    }
}
