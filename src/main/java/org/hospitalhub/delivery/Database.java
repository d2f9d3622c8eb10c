package org.hospitalhub.delivery;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

import javax.sql.DataSource;

import jakarta.enterprise.context.ApplicationScoped;

import org.jboss.logging.Logger;

/** The hub's own database (PostgreSQL in production, H2 embedded by default) and what differs between them. */
@ApplicationScoped
public class Database {

    private static final Logger LOG = Logger.getLogger(Database.class);
    private static final ThreadLocal<Deque<Scope>> SCOPES = ThreadLocal.withInitial(ArrayDeque::new);

    /** One {@link #inTransaction} of this thread: its connection, the work left for its commit, the actions after it. */
    private static final class Scope {
        final List<Runnable> afterCommit = new ArrayList<>(0);
        final List<Runnable> afterRollback = new ArrayList<>(0);
        final Map<Object, BeforeCommit> beforeCommit = new LinkedHashMap<>(2);
        Connection connection;
        /** The deferred work now running is the last of the transaction: its last statement may commit it. */
        boolean finalWork;
        /** That statement was made to commit the transaction (see {@link #committing}). */
        boolean committedInline;
        /** Statements not yet sent, to go with a later one (see {@link #ahead}). */
        final List<Ahead> ahead = new ArrayList<>(0);
    }

    private final DataSource dataSource;
    private volatile Boolean postgres;

    public Database(@org.eclipse.microprofile.config.inject.ConfigProperty(name = "hub.datasource") String name) {
        this.dataSource = io.quarkus.arc.Arc.container()
                .select(DataSource.class, new io.quarkus.agroal.DataSource.DataSourceLiteral(name)).get();
    }

    public DataSource dataSource() {
        return dataSource;
    }

    public Connection connection() throws SQLException {
        return dataSource.getConnection();
    }

    public boolean isPostgres() {
        Boolean p = postgres;
        if (p == null) {
            try (Connection c = dataSource.getConnection()) {
                p = isPostgres(c);
            } catch (SQLException e) {
                throw new IllegalStateException("cannot reach the hub database: " + e.getMessage(), e);
            }
            postgres = p;
        }
        return p;
    }

    /** Whether {@code c} is a connection to PostgreSQL (else H2 or another database: portable SQL only). */
    public static boolean isPostgres(Connection c) throws SQLException {
        return c.getMetaData().getDatabaseProductName().toLowerCase(java.util.Locale.ROOT).contains("postgres");
    }

    public static Timestamp ts(Instant i) {
        return Timestamp.from(i);
    }

    public static OffsetDateTime utc(Instant i) {
        return i.atOffset(ZoneOffset.UTC);
    }

    /** Runs work in one transaction: commit on success, rollback on any failure. */
    public <T> T inTransaction(SqlWork<T> work) throws SQLException {
        return inTransaction(dataSource, work);
    }

    /** Runs work in one transaction on a connection of {@code dataSource}: commit on success, rollback on failure. */
    public static <T> T inTransaction(DataSource dataSource, SqlWork<T> work) throws SQLException {
        Deque<Scope> scopes = SCOPES.get();
        Scope mine = new Scope();
        scopes.push(mine);
        T result;
        boolean committed = false;
        try (Connection c = dataSource.getConnection()) {
            mine.connection = c;
            boolean auto = c.getAutoCommit();
            c.setAutoCommit(false);
            try {
                result = work.run(c);
                // work deferred to the commit (see beforeCommit), in the order it was first asked for, what must come
                // last after the rest; it may defer more
                while (!mine.beforeCommit.isEmpty()) {
                    Object key = null;
                    for (Map.Entry<Object, BeforeCommit> e : mine.beforeCommit.entrySet()) {
                        if (key == null || !e.getValue().last()) {
                            key = e.getKey();
                            if (!e.getValue().last()) {
                                break;
                            }
                        }
                    }
                    BeforeCommit deferred = mine.beforeCommit.remove(key);
                    mine.finalWork = mine.beforeCommit.isEmpty();
                    deferred.run(c);
                    mine.finalWork = false;
                    if (mine.committedInline && !mine.beforeCommit.isEmpty()) {
                        throw new IllegalStateException("deferred work committed the transaction and then deferred more");
                    }
                }
                if (!mine.committedInline) {
                    runAhead(mine); // none of the last statements took them
                    c.commit();
                }
                committed = true;
            } catch (SQLException | RuntimeException e) {
                c.rollback();
                throw e;
            } finally {
                c.setAutoCommit(auto);
            }
        } finally {
            scopes.pop();
            if (!committed) {
                for (Runnable r : mine.afterRollback) {
                    try {
                        r.run();
                    } catch (RuntimeException e) {
                        LOG.warnf("An after-rollback action failed: %s", e.toString());
                    }
                }
            }
        }
        for (Runnable r : mine.afterCommit) {
            try {
                r.run();
            } catch (RuntimeException e) {
                LOG.warnf("An after-commit action failed (what it would have sped up happens at its next poll): %s", e.toString());
            }
        }
        return result;
    }

    /** Whether {@code c} is the connection of this thread's innermost {@link #inTransaction}. */
    public static boolean inTransactionOn(Connection c) {
        return scopeOn(c) != null;
    }

    /**
     * Runs {@code action} if the innermost {@link #inTransaction} of this thread ends without committing (its work or
     * its commit failed, and it was rolled back), after the connection was given back; outside any transaction, never.
     * For undoing what a transaction took in memory (a claim on a project's steps) when what it wrote is undone.
     */
    public static void afterRollback(Runnable action) {
        Scope scope = SCOPES.get().peek();
        if (scope != null) {
            scope.afterRollback.add(action);
        }
    }

    /**
     * Runs {@code action} once the innermost {@link #inTransaction} of this thread has committed (not at all if it
     * rolls back), or at once outside any. For wake-ups of pollers (a sender that should look at a row just written):
     * never for anything the transaction's outcome depends on, since a failing action is only logged.
     */
    public static void afterCommit(Runnable action) {
        Scope scope = SCOPES.get().peek();
        if (scope == null) {
            action.run();
        } else {
            scope.afterCommit.add(action);
        }
    }

    /**
     * Work of the innermost {@link #inTransaction} of this thread on {@code c} to be done just before it commits, in
     * that transaction (its failure rolls the whole back): the one registered under {@code key}, made by {@code make}
     * the first time. Rows that several parts of a transaction write to one table are so sent in one batch, one round
     * trip at the end instead of one each (on a loaded database, milliseconds each). Null when {@code c} is not the
     * connection of this thread's innermost transaction (autocommit, or another connection): the caller writes at once.
     */
    @SuppressWarnings("unchecked")
    public static <T extends BeforeCommit> T beforeCommit(Connection c, Object key, Supplier<T> make) {
        Scope scope = scopeOn(c);
        if (scope == null) {
            return null;
        }
        return (T) scope.beforeCommit.computeIfAbsent(key, k -> make.get());
    }

    /**
     * The SQL of the last statement of the last deferred work of this thread's innermost transaction on {@code c},
     * made to commit that transaction too when the database is PostgreSQL: {@code sql; COMMIT}, sent with it in one
     * round trip (the driver sends both before waiting; a failing statement leaves the COMMIT unrun and the transaction
     * is rolled back as usual). On a loaded database every round trip costs milliseconds, and a transaction whose last
     * work is a batch of rows (the federation outbox, a node's reports) saves one. {@code sql} unchanged anywhere else
     * (work not deferred, not the last, another database). The caller runs it with {@code execute} as its last
     * statement, then does nothing that can fail (the transaction would be reported failed though committed) and
     * defers nothing (refused).
     */
    public static String committing(Connection c, String sql) throws SQLException {
        Scope scope = scopeOn(c);
        if (scope == null) {
            return sql;
        }
        runAhead(scope); // before it, alone: this caller reads its own statement's results only
        if (!commitsInline(scope)) {
            return sql;
        }
        scope.committedInline = true;
        return sql + "; COMMIT";
    }

    /** The innermost transaction of this thread if it is on {@code c}, else null. */
    private static Scope scopeOn(Connection c) {
        Scope scope = SCOPES.get().peek();
        return scope != null && scope.connection == c ? scope : null;
    }

    /** Whether the statement now asked for (see {@link #committing}) may carry the transaction's commit. */
    private static boolean commitsInline(Scope scope) throws SQLException {
        return scope.finalWork && isPostgres(scope.connection);
    }

    /**
     * As {@link #committing(Connection, String)}, also carrying the statements sent {@link #ahead} of it: they, this
     * statement and the COMMIT go in one round trip when it is the transaction's last (else they are run before it,
     * alone). {@code bind} binds this statement's parameters from the index it is given; {@code read} gets this
     * statement's first result (null if it is an update count).
     */
    public static <T> T executeCommitting(Connection c, String sql, Binder bind, ResultReader<T> read) throws SQLException {
        Scope scope = scopeOn(c);
        List<Ahead> carried = List.of();
        String text = sql;
        if (scope != null && commitsInline(scope)) {
            carried = List.copyOf(scope.ahead);
            scope.ahead.clear();
            StringBuilder b = new StringBuilder();
            for (Ahead a : carried) {
                b.append(a.sql()).append("; ");
            }
            text = b.append(sql).append("; COMMIT").toString();
            scope.committedInline = true;
        } else if (scope != null) {
            runAhead(scope);
        }
        try (PreparedStatement ps = c.prepareStatement(text)) {
            int i = 1;
            for (Ahead a : carried) {
                i = a.bind().bind(ps, i);
            }
            bind.bind(ps, i);
            ps.execute();
            for (int k = 0; k < carried.size(); k++) {
                ps.getMoreResults(); // an ahead's result (its failure has failed the execute above)
            }
            try (ResultSet rs = ps.getResultSet()) {
                return read.read(rs);
            }
        }
    }

    /** Binds a statement's parameters from index {@code from}; returns the index after its last. */
    @FunctionalInterface
    public interface Binder {
        int bind(PreparedStatement ps, int from) throws SQLException;
    }

    /** Reads a statement's result (null: it gave an update count). */
    @FunctionalInterface
    public interface ResultReader<T> {
        T read(ResultSet rs) throws SQLException;
    }

    /** A statement sent ahead of a later one ({@link #ahead}): its SQL and how its parameters are bound. */
    public record Ahead(String sql, Binder bind) {
    }

    /**
     * Sends {@code statement} in the transaction on {@code c} with a later statement instead of alone: with the
     * committing statement of the transaction's last deferred work ({@link #executeCommitting}) in one round trip, or
     * alone just before that statement or the commit, or when {@link #runAhead} is asked (before reading what it
     * writes). For a write whose outcome the caller has already taken as done (rows it knows it changes, reports of
     * them made): it must then fail, by raising an error, if it does not do so; its successors, the COMMIT included,
     * are then not run and the transaction is rolled back. Outside a transaction on {@code c}: run at once.
     */
    public static void ahead(Connection c, Ahead statement) throws SQLException {
        Scope scope = scopeOn(c);
        if (scope == null) {
            run(c, statement);
            return;
        }
        if (scope.committedInline) {
            throw new IllegalStateException("the transaction was committed by its last statement: nothing can follow it");
        }
        scope.ahead.add(statement);
    }

    /** Runs the statements sent {@link #ahead} in the transaction on {@code c} now (before reading what they write). */
    public static void runAhead(Connection c) throws SQLException {
        Scope scope = scopeOn(c);
        if (scope != null) {
            runAhead(scope);
        }
    }

    private static void runAhead(Scope scope) throws SQLException {
        while (!scope.ahead.isEmpty()) {
            run(scope.connection, scope.ahead.remove(0));
        }
    }

    private static void run(Connection c, Ahead statement) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(statement.sql())) {
            statement.bind().bind(ps, 1);
            ps.execute();
        }
    }

    /** Whether work is deferred under {@code key} to the commit of this thread's innermost transaction on {@code c}. */
    public static boolean deferred(Connection c, Object key) {
        Scope scope = scopeOn(c);
        return scope != null && scope.beforeCommit.containsKey(key);
    }

    /** See {@link #beforeCommit}. */
    @FunctionalInterface
    public interface BeforeCommit {
        void run(Connection c) throws SQLException;

        /**
         * Whether this work comes after every other deferred work of the transaction (which may add to it): a batch
         * of rows the others write (the federation outbox's messages), so that it stays one batch.
         */
        default boolean last() {
            return false;
        }
    }

    @FunctionalInterface
    public interface SqlWork<T> {
        T run(Connection c) throws SQLException;
    }
}
