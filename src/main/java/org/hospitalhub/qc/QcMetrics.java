package org.hospitalhub.qc;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.enterprise.context.ApplicationScoped;

import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/**
 * qc meters: {@code qc_tasks_open{status=open|overdue}} (tasks still to be written, read from the database at most
 * every 5 s), {@code qc_tasks_overdue_total} (tasks marked overdue), {@code qc_reminders_total},
 * {@code qc_timer_lateness_seconds} (histogram: how late a reminder or deadline fired after its time).
 */
@ApplicationScoped
public class QcMetrics {

    private static final Logger LOG = Logger.getLogger(QcMetrics.class);

    private final MeterRegistry registry;
    private final Database db;
    private final Timer lateness;
    private final Map<String, AtomicLong> open = new ConcurrentHashMap<>();
    private volatile long readAt;

    public QcMetrics(MeterRegistry registry, Database db) {
        this.registry = registry;
        this.db = db;
        this.lateness = Timer.builder("qc.timer.lateness").description("How late a qc reminder or deadline fired")
                .publishPercentileHistogram().minimumExpectedValue(Duration.ofMillis(10))
                .maximumExpectedValue(Duration.ofHours(1)).register(registry);
        for (String s : new String[] { "open", "overdue" }) {
            AtomicLong v = new AtomicLong();
            open.put(s, v);
            Gauge.builder("qc.tasks.open", v, x -> {
                refresh();
                return x.get();
            }).tag("status", s).description("qc tasks still to be written").register(registry);
        }
    }

    private void refresh() {
        long now = System.currentTimeMillis();
        if (now - readAt < 5000) {
            return;
        }
        readAt = now;
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT status, COUNT(*) FROM qc_task WHERE status IN ('OPEN', 'OVERDUE') GROUP BY status")) {
            long o = 0;
            long d = 0;
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    if ("OPEN".equals(rs.getString(1))) {
                        o = rs.getLong(2);
                    } else {
                        d = rs.getLong(2);
                    }
                }
            }
            open.get("open").set(o);
            open.get("overdue").set(d);
        } catch (SQLException e) {
            LOG.debugf("qc_tasks_open not refreshed: %s", e.getMessage());
        }
    }

    public void overdue(String hospital, int n) {
        if (n > 0) {
            Counter.builder("qc.tasks.overdue").description("qc tasks marked overdue").tag("hospital", hospital)
                    .register(registry).increment(n);
            readAt = 0;
        }
    }

    public void changed() {
        readAt = 0;
    }

    public void reminder(String hospital) {
        Counter.builder("qc.reminders").description("qc reminders sent").tag("hospital", hospital).register(registry).increment();
    }

    public void lateness(Duration late) {
        lateness.record(late.isNegative() ? Duration.ZERO : late);
    }
}
