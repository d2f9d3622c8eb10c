package org.hospitalhub.delivery;

import java.lang.management.ManagementFactory;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

import javax.sql.DataSource;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * Database leases: the one replica holding a named lease runs that singleton job (a flow's dispatcher, a SQL poller).
 * A lease is renewed while held and lapses when its holder dies; a graceful shutdown releases it at once.
 * Works on any replica count and on PostgreSQL and H2 alike (no Kubernetes API needed).
 */
@ApplicationScoped
public class Leases {

    private static final Logger LOG = Logger.getLogger(Leases.class);

    private final DataSource dataSource;
    private final Duration ttl;
    private final Clock clock;
    /** This process, distinct from an earlier run on the same host: its leases must be taken over, not reused. */
    private final String owner;
    private final Map<String, Instant> held = new ConcurrentHashMap<>();

    @Inject
    public Leases(Database db, @ConfigProperty(name = "hub.lease.ttl", defaultValue = "15s") Duration ttl) {
        this(db.dataSource(), ttl);
    }

    /** Leases in the {@code hub_lease} table of {@code dataSource}; each instance is a holder of its own. */
    public Leases(DataSource dataSource, Duration ttl) {
        this.dataSource = dataSource;
        this.ttl = ttl;
        this.clock = Clock.systemUTC();
        this.owner = ManagementFactory.getRuntimeMXBean().getName() + "/" + UUID.randomUUID().toString().substring(0, 8);
    }

    /** How long a lease lasts without renewal: how long a crashed holder's jobs wait for another replica. */
    public Duration ttl() {
        return ttl;
    }

    public String owner() {
        return owner;
    }

    /**
     * Holds or renews the lease. Returns {@link Hold#ACQUIRED} when this call took it over (the caller must then
     * assume the previous holder's in-flight work is lost), {@link Hold#HELD} when it already held it, and
     * {@link Hold#NOT_HELD} when another live replica holds it.
     */
    public Hold hold(String name) {
        Instant now = clock.instant();
        Instant until = held.get(name);
        if (until != null && until.minus(ttl.dividedBy(2)).isAfter(now)) {
            return Hold.HELD; // renewed recently enough
        }
        Instant expires = now.plus(ttl);
        try {
            boolean ok = Database.inTransaction(dataSource, c -> {
                try (PreparedStatement up = c.prepareStatement(
                        "UPDATE hub_lease SET owner = ?, expires_at = ? WHERE name = ? AND (owner = ? OR expires_at < ?)")) {
                    up.setString(1, owner);
                    up.setObject(2, Database.utc(expires));
                    up.setString(3, name);
                    up.setString(4, owner);
                    up.setObject(5, Database.utc(now));
                    if (up.executeUpdate() == 1) {
                        return true;
                    }
                }
                try (PreparedStatement ins = c.prepareStatement(
                        "INSERT INTO hub_lease (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")) {
                    ins.setString(1, name);
                    ins.setString(2, owner);
                    ins.setObject(3, Database.utc(expires));
                    return ins.executeUpdate() == 1;
                }
            });
            if (ok) {
                boolean fresh = held.put(name, expires) == null;
                if (fresh) {
                    LOG.infof("Lease %s taken by %s", name, owner);
                }
                return fresh ? Hold.ACQUIRED : Hold.HELD;
            }
        } catch (SQLException e) {
            LOG.warnf("Cannot renew lease %s: %s", name, e.getMessage());
        }
        if (held.remove(name) != null) {
            LOG.warnf("Lease %s lost by %s", name, owner);
        }
        return Hold.NOT_HELD;
    }

    public void release(String name) {
        if (held.remove(name) == null) {
            return;
        }
        try {
            Database.inTransaction(dataSource, c -> {
                try (PreparedStatement del = c.prepareStatement("DELETE FROM hub_lease WHERE name = ? AND owner = ?")) {
                    del.setString(1, name);
                    del.setString(2, owner);
                    return del.executeUpdate();
                }
            });
        } catch (SQLException e) {
            LOG.warnf("Cannot release lease %s (it lapses by itself): %s", name, e.getMessage());
        }
    }

    /**
     * Camel has stopped every route (a graceful shutdown): release now, while the datasource is still open (it is
     * closed before this bean is destroyed).
     */
    void onCamelStopped(@Observes org.apache.camel.quarkus.main.events.AfterStop stopped) {
        releaseAll();
    }

    @PreDestroy
    void releaseAll() {
        for (String name : held.keySet()) {
            release(name);
        }
    }

    public enum Hold {
        ACQUIRED,
        HELD,
        NOT_HELD;

        public boolean held() {
            return this != NOT_HELD;
        }
    }
}
